"""Helpers for tests of jobd's Prometheus metrics: find the listener, scrape it, read samples."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Samples", "metrics_url", "scrape", "scrape_until", "value"]

# Every sample of one scrape, keyed by name and sorted labels.
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_url(log: str) -> str:
    """The URL a jobd or agent log says its metrics are on."""
    found = re.search(r"metrics on (http://[^\s\",]+)", log)
    assert found is not None, f"no metrics listener in:\n{log}"
    return found.group(1)


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def scrape_until(url: str, ready: Callable[[Samples], bool]) -> Samples:
    """Scrape until `ready` holds: jobd counts a refused handshake, a cancelled stream or a job's
    end when it notices, which may be after the client has moved on. Past 10 s, the last one."""
    deadline = time.monotonic() + 10
    while True:
        samples = scrape(url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)
