"""Decoding in processes the service can kill: a decode that overruns stops costing anything.

A thread running a C decoder cannot be stopped: a scan-bomb JPEG or a PDF page that renders
for minutes keeps its core busy long after its request answered 504, and on a small host a
few of them starve everyone. So the service decodes in a pool of worker processes
(each a fork of a small server that has the decoder imported: a few milliseconds):

- **Budget.** Each job has a deadline (``decode_timeout_s``, never past its request's own);
  at the deadline the worker is killed (SIGKILL) and replaced, and the image gets an
  :class:`~safeclip_guardrail.errors.ImageInputError`, so the guard's ``on_error`` decides
  (fail closed by default). A request that gives up (timeout, client gone) has its job's
  worker killed the same way: nothing it started keeps running.
- **Priority.** A job still running after ``slow_after_s`` has its worker reniced to the
  lowest priority, and the service asks for the lowest priority for every further job of a
  *bulk* request (more than four frames, or more than ``slow_after_s`` of decoding: see
  :mod:`.batcher`): slow inputs and large requests get what CPU the others leave. A
  process cannot raise its priority again, so a normal job never runs in a lowered worker:
  a fresh fork takes its place.
- **Fairness.** Workers are handed out first come, first served; a request decodes one
  image at a time, so a request with many images never holds more than one worker; and
  low-priority jobs (slow requests) never hold more than half of the workers, so a quick
  image always finds one soon.
- **Crashes.** A worker that dies (a decoder segfault, the OOM killer) costs its image an
  error and is replaced.

The decoded frames come back pickled (a 224-pixel draft of a photo is ~150 KB); the encoded
bytes go in once and never come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection

from safeclip_guardrail.errors import ConfigurationError, GuardRuntimeError
from safeclip_guardrail.serve._decode_worker import (
    DecodeFn,
    DecodeJob,
    DecodeReply,
    decode_job,
)

__all__ = ["DecodePool", "DecodePoolStats"]

_POLL_S = 0.02
"""How often a waiting job looks at its deadline and cancellation."""
_LOW_PRIORITY = 19
_ZYGOTE_MAIN = ("import socket, sys\n"
                "from safeclip_guardrail.serve._decode_worker import zygote\n"
                "zygote(socket.socket(fileno=int(sys.argv[1])))\n")


@dataclass
class DecodePoolStats:
    """Counters of one pool (tests, metrics)."""

    jobs: int = 0
    killed_timeout: int = 0
    killed_cancelled: int = 0
    crashed: int = 0
    reniced: int = 0
    started: int = 0


class _Zygote:
    """The service's end of the fork server (:func:`._decode_worker.zygote`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    def fork(self, decode: DecodeFn) -> tuple[int, Connection]:
        """A new worker running ``decode``: its pid and the service's end of its pipe."""
        with self._lock:
            if self._sock is None or self._proc is None or self._proc.poll() is not None:
                self._start()
            ours, theirs = socket.socketpair()
            try:
                if self._sock is None:  # _start() sets it
                    msg = "the decode server did not start"
                    raise GuardRuntimeError(msg)
                socket.send_fds(self._sock, [pickle.dumps(decode)], [theirs.fileno()])
                answer = self._sock.recv(16)
            except OSError as exc:
                ours.close()
                self.close()
                msg = f"the decode server failed: {exc}"
                raise GuardRuntimeError(msg) from None
            finally:
                theirs.close()
            if len(answer) != 4:
                ours.close()
                self.close()
                msg = "the decode server stopped"
                raise GuardRuntimeError(msg)
            return struct.unpack("!i", answer)[0], Connection(ours.detach())

    def _start(self) -> None:
        self.close()
        mine, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE_MAIN, str(child.fileno())],
            pass_fds=(child.fileno(),), env=env,
            stdin=subprocess.DEVNULL)
        child.close()
        self._sock = mine

    def close(self) -> None:
        sock, proc = self._sock, self._proc
        self._sock = self._proc = None
        if sock is not None:
            sock.close()  # the server exits, and its workers with it
        if proc is not None:
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)


class _Worker:
    """One decode process and its pipe; used by one job at a time (from a pool thread)."""

    def __init__(self, zygote: _Zygote, decode: DecodeFn, stats: DecodePoolStats) -> None:
        self._zygote = zygote
        self._decode = decode
        self._stats = stats
        self._pid: int | None = None
        self._conn: Connection | None = None
        self._lowered = False
        self.closed = False

    @property
    def pid(self) -> int | None:
        return self._pid

    def ensure(self) -> None:
        if self.closed:
            msg = "the decode pool is shutting down"
            raise GuardRuntimeError(msg)
        if self._conn is not None:
            return
        self._pid, self._conn = self._zygote.fork(self._decode)
        self._lowered = False
        self._stats.started += 1

    def replace(self) -> None:
        """Kill the process and start its successor now, off the next job's path."""
        self.kill()
        with contextlib.suppress(Exception):  # the next job's ensure() tries again
            self.ensure()

    def kill(self) -> None:
        pid, conn = self._pid, self._conn
        self._pid = self._conn = None
        if pid is not None:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def lower(self) -> None:
        if self._pid is None or self._lowered:
            return
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, self._pid, _LOW_PRIORITY)
            self._stats.reniced += 1
        self._lowered = True

    @property
    def lowered(self) -> bool:
        return self._lowered

    def run(self, job: DecodeJob, *, timeout: float, slow_after: float, low: bool,
            cancelled: threading.Event) -> DecodeReply | None:
        """The reply, an error reply (deadline, crash), or None when cancelled. ``low``:
        run at the lowest priority; a normal job never runs in a lowered process (a process
        cannot raise its priority again: a fresh one takes its place)."""
        if self._lowered and not low:
            self.kill()
        self.ensure()
        if low:
            self.lower()
        conn = self._conn
        if conn is None:  # ensure() sets it
            msg = "the decode worker did not start"
            raise GuardRuntimeError(msg)
        start = time.monotonic()
        deadline = start + timeout
        try:
            conn.send(job)
            while True:
                now = time.monotonic()
                if cancelled.is_set():
                    self._stats.killed_cancelled += 1
                    self.replace()
                    return None
                if now >= deadline:
                    self._stats.killed_timeout += 1
                    self.replace()
                    return _overran(job, timeout, now - start)
                if not self._lowered and now - start >= slow_after:
                    self.lower()
                if conn.poll(min(_POLL_S, deadline - now)):
                    reply: DecodeReply = conn.recv()
                    break
        except (EOFError, OSError, BrokenPipeError):
            self._stats.crashed += 1
            self.replace()
            return DecodeReply(error="the decoder process died on this image (a crash or out "
                                     "of memory); the image cannot be judged",
                               source=job.source, seconds=time.monotonic() - start)
        return reply


class DecodePool:
    """``await pool.decode(job, timeout=...)`` in one of ``workers`` killable processes.

    ``decode`` is what a worker runs per job (a module-level function; the default is the
    guard's decode). ``workers=0`` decodes in threads of this process instead, for hosts
    that cannot start processes: no isolation (an overrunning decode cannot be stopped, so
    ``timeout`` does not apply there; only the request's own timeout ends the wait).
    """

    def __init__(self, *, workers: int | None = None, slow_after_s: float = 0.25,
                 decode: DecodeFn = decode_job) -> None:
        default = min(32, 2 * (os.cpu_count() or 1) + 4)  # idle ones cost only memory
        self.workers = default if workers is None else workers
        if self.workers < 0 or slow_after_s <= 0:
            msg = (f"DecodePool needs workers >= 0 and slow_after_s > 0; got "
                   f"{self.workers} and {slow_after_s}")
            raise ConfigurationError(msg)
        self.slow_after_s = slow_after_s
        self.decode_fn = decode
        self._zygote = _Zygote()
        self.stats = DecodePoolStats()
        self._threads_wanted = self.workers or default
        self._idle: list[_Worker] = []
        self._free: asyncio.Semaphore | None = None
        self._low: asyncio.Semaphore | None = None  # low-priority jobs: half the workers
        self._all: list[_Worker] = []
        self._threads: ThreadPoolExecutor | None = None
        self._starting: asyncio.Future[None] | None = None

    @property
    def running(self) -> bool:
        return self._threads is not None

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the live decode workers (operations, tests)."""
        return [w.pid for w in self._all if w.pid is not None]

    async def start(self) -> None:
        """Start the workers (idempotent; the app's lifespan, or the first request)."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        threads = ThreadPoolExecutor(max_workers=self._threads_wanted,
                                     thread_name_prefix="safeclip-decode")
        if self.workers:
            workers = [_Worker(self._zygote, self.decode_fn, self.stats)
                       for _ in range(self.workers)]
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(threads, w.ensure) for w in workers))
            self._all, self._idle = workers, list(workers)
        self._free, self._threads = asyncio.Semaphore(len(self._idle)), threads
        self._low = asyncio.Semaphore(max(1, len(self._idle) // 2))

    async def stop(self) -> None:
        """Kill every worker (jobs in flight end as cancelled)."""
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await starting
        threads, self._threads = self._threads, None
        workers, self._all = self._all, []
        for w in workers:
            w.closed = True
            w.kill()
        if threads is not None:
            threads.shutdown(wait=False, cancel_futures=True)
        self._zygote.close()
        self._idle, self._free, self._low = [], None, None

    async def decode(self, job: DecodeJob, *, timeout: float,
                     low_priority: bool = False) -> DecodeReply:
        """Decode ``job`` within ``timeout`` seconds; cancelling the caller kills its worker.

        ``low_priority``: run it at the lowest CPU priority from the start (the service asks
        for it once a request has spent more than ``slow_after_s`` decoding).
        """
        await self.start()
        free, low, threads = self._free, self._low, self._threads
        if free is None or low is None or threads is None:
            msg = "the decode pool is shutting down"
            raise GuardRuntimeError(msg)
        self.stats.jobs += 1
        loop = asyncio.get_running_loop()
        if not self.workers:  # threads: no deadline (abandoning a decode would not stop it,
            # and its thread would be lost to the requests after it)
            return await loop.run_in_executor(threads, self.decode_fn, job)
        if not low_priority:
            return await self._run(job, timeout, free, threads, low_priority=False)
        async with low:  # slow requests never hold more than half the workers
            return await self._run(job, timeout, free, threads, low_priority=True)

    async def _run(self, job: DecodeJob, timeout: float, free: asyncio.Semaphore,
                   threads: ThreadPoolExecutor, *, low_priority: bool) -> DecodeReply:
        loop = asyncio.get_running_loop()
        await free.acquire()  # first come, first served
        worker = self._take(low_priority)
        cancelled = threading.Event()
        fut = loop.run_in_executor(threads, lambda: worker.run(
            job, timeout=timeout, slow_after=self.slow_after_s, low=low_priority,
            cancelled=cancelled))

        def give_back(_: object) -> None:  # once the worker is really free (or replaced)
            self._idle.append(worker)
            free.release()

        fut.add_done_callback(give_back)
        try:
            reply = await asyncio.shield(fut)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        if reply is None:  # cancelled from elsewhere (stop)
            msg = "the decode pool is shutting down"
            raise GuardRuntimeError(msg)
        return reply

    def _take(self, low: bool) -> _Worker:
        """An idle worker, one already at the wanted priority when there is one."""
        for i, w in enumerate(self._idle):
            if w.lowered == low:
                return self._idle.pop(i)
        return self._idle.pop(0)


def _overran(job: DecodeJob, timeout: float, seconds: float) -> DecodeReply:
    return DecodeReply(error=f"decoding took longer than {timeout:.3g} s, the time this "
                             "service allows per image; send a smaller or simpler image",
                       source=job.source, seconds=seconds)
