"""Small writes of one loop iteration leave as one; large ones and back-pressure are untouched."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from jobservice.api.coalesce import COALESCE_LIMIT, CoalescingTransport


class Recorder:
    """The wrapped end: records what reaches it, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.buffered = 0

    def write(self, data: bytes) -> None:
        self.events.append(("write", bytes(data)))

    def close(self) -> None:
        self.events.append(("close", b""))

    def abort(self) -> None:
        self.events.append(("abort", b""))

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def wrap() -> tuple[CoalescingTransport, Recorder]:
    inner = Recorder()
    return CoalescingTransport(cast(asyncio.Transport, inner)), inner


async def test_writes_of_one_iteration_become_one_write() -> None:
    wrapper, inner = wrap()
    for part in (b"headers", b"data", b"trailers"):
        wrapper.write(part)
    assert inner.events == []
    assert wrapper.get_write_buffer_size() == len(b"headersdatatrailers")
    await asyncio.sleep(0)
    assert inner.events == [("write", b"headersdatatrailers")]
    wrapper.write(b"next")
    await asyncio.sleep(0)
    assert inner.events[-1] == ("write", b"next")


async def test_large_writes_go_at_once_so_back_pressure_sees_them() -> None:
    wrapper, inner = wrap()
    big = b"x" * COALESCE_LIMIT
    wrapper.write(big)
    assert inner.events == [("write", big)]
    wrapper.write(b"small")
    wrapper.write(big)  # what is held goes first, in order, without waiting
    assert inner.events[1:] == [("write", b"small" + big)]
    assert wrapper.get_write_buffer_size() == 0


async def test_close_sends_what_is_held_and_abort_drops_it() -> None:
    wrapper, inner = wrap()
    wrapper.write(b"goaway")
    wrapper.close()
    assert inner.events == [("write", b"goaway"), ("close", b"")]
    wrapper, inner = wrap()
    wrapper.write(b"dropped")
    wrapper.abort()
    await asyncio.sleep(0)
    assert inner.events == [("abort", b"")]


def test_everything_else_is_the_wrapped_transport() -> None:
    wrapper, _ = wrap()
    assert wrapper.get_extra_info("peername") == ("127.0.0.1", 1)
