"""`make bench`: run every measurement, print the table, regenerate docs/benchmarks.md and plots.

python bench/run.py                 # the full run (a few minutes); writes docs/
python bench/run.py --quick         # a smoke run with small sizes; writes bench/out/ only
python bench/run.py --only latency  # one measurement (repeatable); writes bench/out/ only
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

if __package__ in {None, ""}:  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from bench.harness import OUT, PROCS, Context, Scale, Section, Workspace, format_table
from bench.sshd import PrivateSshd, ensure_openssh
from jobservice._upstream.hyperframe import quiet_data_frame_repr

__all__ = ["MEASUREMENTS", "main"]

MEASUREMENTS = (
    "throughput",
    "fanout",
    "latency",
    "startrate",
    "oneshot",
    "memory",
    "confinement",
    "cluster",
)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 rounds: a smoke run")
    parser.add_argument(
        "--only", action="append", choices=MEASUREMENTS, help="run only this (repeatable)"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite the report from bench/out/results.json (after editing "
        "bench/analysis.md or report.py)",
    )
    return parser.parse_args(argv)


def _report_again() -> int:
    """The report and plots once more, from the last run's saved results."""
    results = json.loads((OUT / "results.json").read_text())
    scale = results["scale"]
    scale["fanout"] = tuple(tuple(pair) for pair in scale["fanout"])
    sections = [Section.from_json(section) for section in results["sections"]]
    full = not scale["quick"] and {s.key for s in sections} == set(MEASUREMENTS)
    run = report.Run(Scale(**scale), results["seconds"])
    if "when" in results:  # as measured, not as rewritten
        run = report.Run(run.scale, run.seconds, results["when"], results["machine"])
    written = report.write(sections, run, final=full)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _measure(ctx: Context, names: list[str]) -> list[Section]:
    sections = []
    for name in names:
        print(f"-- {name} ...", flush=True)
        begin = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        section: Section = module.run(ctx)
        section.seconds = time.monotonic() - begin
        section.commands = [ctx.ws.shown(command) for command in section.commands]
        if ctx.ssh is None and ctx.ssh_note and name in {"throughput", "latency", "oneshot"}:
            section.notes.append(f"ssh column skipped: {ctx.ssh_note}")
        sections.append(section)
        print(format_table([section]), flush=True)
    return sections


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    quiet_data_frame_repr()  # for the in-process clients, as jobctl and jobd do
    if args.report_only:
        return _report_again()
    names = args.only or list(MEASUREMENTS)
    scale = Scale.smoke() if args.quick else Scale.full()
    started = time.monotonic()
    ws = Workspace.create()
    creates = [ws.create_cost_us()]
    print(f"file create at start: {creates[0]:.0f} us")
    sshd_path, ssh_note = ensure_openssh()
    try:
        sections = _run_all(ws, scale, names, sshd_path, ssh_note)
        creates.append(ws.create_cost_us())
    finally:
        PROCS.end_all()
        ws.remove()  # the next run's creates pay for these deletions for minutes: see discard
    total = time.monotonic() - started
    print(f"\n==== all figures ({total:.0f} s)\n{format_table(sections)}")
    OUT.mkdir(parents=True, exist_ok=True)
    disk = ("File create, at start / end", " / ".join(f"{us:.0f} us" for us in creates))
    run = report.Run(scale, total, machine=[*report.machine(), disk])
    results = {
        "scale": vars(scale),
        "seconds": total,
        "when": run.when,
        "machine": run.machine,
        "sections": [s.to_json() for s in sections],
    }
    (OUT / "results.json").write_text(json.dumps(results, indent=1))
    full = not args.quick and not args.only
    written = report.write(sections, run, final=full)
    print(f"\nwrote {', '.join(str(p) for p in written)}")
    return 0


def _run_all(
    ws: Workspace, scale: Scale, names: list[str], sshd_path: str | None, ssh_note: str
) -> list[Section]:
    with contextlib.ExitStack() as stack:
        ssh: list[str] | None = None
        if sshd_path is not None:
            try:
                ssh = stack.enter_context(PrivateSshd(sshd_path, ws.root / "sshd")).ssh()
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                ssh_note = str(exc)
        return _measure(Context(ws, scale, ssh, ssh_note), names)


if __name__ == "__main__":
    sys.exit(main())
