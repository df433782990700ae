"""Sections that each stop on their own: a failure or an overrun is recorded, the rest runs.

A lent GPU machine gives one session about 15 minutes, machine start included, so the suite
runs as one process in one call: a process per section would import torch and load the
model again each time (10-20 s apiece). Each section therefore runs in this process under
an interval timer; when its limit passes, :class:`SectionTimeout` is raised into it. That is
a ``BaseException``, so library code that turns ``Exception`` into a verdict cannot swallow
it. A section stuck inside one C call for longer than its limit plus ``grace_s`` cannot be
interrupted that way: a watchdog thread then records it, writes the report, prints it and
ends the process, so one JSON document comes out whatever happens.

Sections fill the dict they are given as they go, so a section that fails or overruns keeps
what it measured before (beside its ``error``). The report is rewritten (atomically) under
the output folder after every section, with ``complete: false`` and the section in flight,
until the end.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NO_CUDA = "no CUDA"
"""The ``skipped`` reason of a section that needs a GPU when none is there."""


class SectionTimeout(BaseException):
    """Raised into a section when its time is up (not an ``Exception``: nothing swallows it)."""


class SectionSkipped(Exception):
    """Raised by a section that finds it cannot run here (a package absent, say)."""


@dataclass(frozen=True)
class Section:
    """One measured part of the suite."""

    name: str
    run: Callable[[dict[str, Any]], None]
    """Fills the dict it is given (partial results survive a failure or a timeout)."""
    timeout_s: float
    needs_cuda: bool = False
    needs: tuple[str, ...] = ()
    """Sections that must have succeeded first (e.g. the model build)."""
    skip: str | None = None
    """A reason to skip it up front (e.g. an option that was not given)."""
    min_s: float = 0.0
    """Seconds it needs to be worth starting: one that reports only at its end is skipped
    rather than cut off when less of the suite's budget is left."""


def log(message: str) -> None:
    print(f"[gpu_suite {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Report:
    """The one JSON document: header, one key per section, status and seconds per section."""

    def __init__(self, head: dict[str, Any], out_dir: Path | None) -> None:
        self.data: dict[str, Any] = {**head, "complete": False, "running": None,
                                     "section_status": {}, "section_s": {}}
        self.out_dir = out_dir
        self._lock = threading.Lock()

    def text(self) -> str:
        for _ in range(5):  # a section may be adding keys while the watchdog reads
            try:
                return json.dumps(self.data, indent=2, default=str)
            except RuntimeError:
                time.sleep(0.05)
        return json.dumps({k: v for k, v in list(self.data.items())}, indent=2, default=repr)

    def write(self) -> None:
        if self.out_dir is None:
            return
        with self._lock:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.out_dir / ".gpu_suite.json.partial"
            tmp.write_text(self.text())
            tmp.replace(self.out_dir / "gpu_suite.json")


def _on_alarm(_signum: int, _frame: Any) -> None:
    raise SectionTimeout


def _free(cuda: bool) -> None:
    gc.collect()
    if cuda:
        import torch

        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except Exception as exc:  # a sticky CUDA error: the next sections will report it
            log(f"after the section, CUDA said: {type(exc).__name__}: {exc}")


class _Watchdog:
    """Ends the process with the report written when a section hangs past its limit."""

    def __init__(self, report: Report, grace_s: float) -> None:
        self.report, self.grace_s = report, grace_s
        self.section: str | None = None
        self.deadline = float("inf")
        self._stop = threading.Event()
        threading.Thread(target=self._watch, name="gpu-suite-watchdog", daemon=True).start()

    def arm(self, section: str, timeout_s: float) -> None:
        self.section, self.deadline = section, time.monotonic() + timeout_s + self.grace_s

    def disarm(self) -> None:
        self.section, self.deadline = None, float("inf")

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            name = self.section
            if name is None or time.monotonic() < self.deadline:
                continue
            data = self.report.data
            data[name] = {**data.get(name, {}), "error": (
                f"hung: still running {self.grace_s:.0f} s after its limit, inside a call the "
                "timer could not interrupt; the suite stopped here")}
            data["section_status"][name] = "error"
            for rest in data.get("planned", []):
                if rest not in data["section_status"]:
                    data[rest] = {"skipped": f"not run: the suite stopped after {name} hung"}
                    data["section_status"][rest] = "skipped"
            data["running"] = None
            self.report.write()
            print(self.report.text(), flush=True)
            log(f"{name} hung; report written, exiting")
            os._exit(3)


def run_sections(sections: list[Section], report: Report, *, cuda: bool, budget_s: float,
                 grace_s: float = 30.0, min_left_s: float = 15.0) -> None:
    """Run ``sections`` in order within ``budget_s`` seconds in all, each within its limit."""
    data = report.data
    data["planned"] = [s.name for s in sections]
    data["budget_s"] = budget_s
    start = time.monotonic()
    watchdog = _Watchdog(report, grace_s)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    outer, _ = signal.getitimer(signal.ITIMER_REAL)  # a caller's own alarm (pytest-timeout)
    try:
        for s in sections:
            left = budget_s - (time.monotonic() - start)
            reason = _skip_reason(s, data, cuda=cuda, left=left, min_left_s=min_left_s)
            if reason is not None:
                data[s.name] = {"skipped": reason}
                data["section_status"][s.name] = "skipped"
                log(f"{s.name}: skipped ({reason})")
                report.write()
                continue
            limit = max(1.0, min(s.timeout_s, left))
            _run_one(s, data, limit, watchdog, report)
            _free(cuda)
            report.write()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer > 0:  # give it back, less the time spent here
            signal.setitimer(signal.ITIMER_REAL, max(0.001, outer - (time.monotonic() - start)))
        watchdog.stop()
    data["running"] = None
    data["complete"] = True
    data["total_s"] = round(time.monotonic() - start, 1)
    report.write()


def _skip_reason(s: Section, data: dict[str, Any], *, cuda: bool, left: float,
                 min_left_s: float) -> str | None:
    if s.skip is not None:
        return s.skip
    if s.needs_cuda and not cuda:
        return NO_CUDA
    failed = [n for n in s.needs if data["section_status"].get(n) != "ok"]
    if failed:
        return f"needs {', '.join(failed)}, which did not succeed"
    if left < max(min_left_s, s.min_s):
        return (f"the suite's budget was spent ({left:.0f} s left of {data['budget_s']:.0f} s; "
                f"it needs about {max(min_left_s, s.min_s):.0f} s)")
    return None


def _run_one(s: Section, data: dict[str, Any], limit: float, watchdog: _Watchdog,
             report: Report) -> None:
    out: dict[str, Any] = {}
    data[s.name] = out
    data["running"] = s.name
    report.write()
    log(f"{s.name}: started (limit {limit:.0f} s)")
    t0 = time.monotonic()
    watchdog.arm(s.name, limit)
    status = "ok"
    try:
        signal.setitimer(signal.ITIMER_REAL, limit)
        s.run(out)
        signal.setitimer(signal.ITIMER_REAL, 0)
    except SectionSkipped as exc:
        status = "skipped"
        out["skipped"] = str(exc)
    except SectionTimeout:
        status = "timeout"
        out["error"] = f"timeout: ran past its {limit:.0f} s limit; figures above were measured"
    except BaseException as exc:  # a section's failure is data, not the end of the suite
        signal.setitimer(signal.ITIMER_REAL, 0)
        if isinstance(exc, KeyboardInterrupt):
            raise
        status = "error"
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc(limit=8)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        watchdog.disarm()
    seconds = round(time.monotonic() - t0, 1)
    data["section_status"][s.name] = status
    data["section_s"][s.name] = seconds
    data["running"] = None
    log(f"{s.name}: {status} in {seconds} s")
    print(json.dumps({s.name: out}, default=str), file=sys.stderr, flush=True)
