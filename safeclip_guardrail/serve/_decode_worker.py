"""What runs inside a decode process of the service: encoded bytes in, judged frames out.

A decode process reads one :class:`DecodeJob` at a time from its pipe and answers one
:class:`DecodeReply`. It decodes exactly as the guard does (``decode_image`` with the
guard's options, draft size and the request's remaining pixel budget) and also builds the
bytes to forward (``forward_image``: re-encoding judged pixels is work too), so everything
whose cost depends on the input runs where the service can kill it. Nothing here imports a
framework or the encoder: the parent keeps the model, the child only Pillow and the decoder.

What crosses the pipe is kept small: the original bytes go in once and never come back (the
parent holds them), the frames come back as pickled RGB images.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

from safeclip_guardrail.config import ImageOptions
from safeclip_guardrail.errors import ImageInputError
from safeclip_guardrail.images.decode import DecodedImage, decode_image, forward_image
from safeclip_guardrail.images.sources import EncodedImage

__all__ = ["DecodeFn", "DecodeJob", "DecodeReply", "decode_job", "serve_jobs", "zygote"]


@dataclass(frozen=True)
class DecodeJob:
    """One image to decode, with everything the decode may spend."""

    data: bytes
    source: str
    mime_type: str | None
    options: ImageOptions
    draft_size: int | None
    budget: int | None
    """Pixels the request may still decode (its share of ``max_request_pixels``)."""
    forward: bool = True


@dataclass(frozen=True)
class DecodeReply:
    """The judged frames (``image.data`` left out) and forward bytes, or why there are none."""

    image: DecodedImage | None = None
    forward: EncodedImage | None = None
    forward_is_original: bool = False
    """The forward bytes are the job's own bytes (sent back empty; the parent fills them in)."""
    error: str | None = None
    source: str | None = None
    seconds: float = 0.0

    def restore(self, job: DecodeJob) -> tuple[DecodedImage, EncodedImage | None]:
        """The decoded image and forward bytes with the job's bytes put back."""
        if self.image is None:
            raise ImageInputError(self.error or "the image could not be decoded",
                                  source=self.source or job.source)
        image = dataclasses.replace(self.image, data=job.data)
        fwd = self.forward
        if fwd is not None and self.forward_is_original:
            fwd = dataclasses.replace(fwd, data=job.data)
        return image, fwd


DecodeFn = Callable[[DecodeJob], DecodeReply]
"""What a decode process runs per job (a module-level function: it is pickled by name)."""


def decode_job(job: DecodeJob) -> DecodeReply:
    """The guard's decode of ``job`` (the default :data:`DecodeFn`); errors come back typed."""
    start = time.perf_counter()
    try:
        src = EncodedImage(job.data, job.source, job.mime_type)
        img = decode_image(src, job.options, draft_size=job.draft_size, pixel_budget=job.budget)
        fwd = forward_image(img) if job.forward else None
    except ImageInputError as exc:
        return DecodeReply(error=str(exc), source=exc.source,
                           seconds=time.perf_counter() - start)
    same = fwd is not None and fwd.data is img.data
    if same and fwd is not None:
        fwd = dataclasses.replace(fwd, data=b"")
    return DecodeReply(image=dataclasses.replace(img, data=None), forward=fwd,
                       forward_is_original=same, seconds=time.perf_counter() - start)


def serve_jobs(conn: Connection, decode: DecodeFn) -> None:
    """The decode process's main loop: one job in, one reply out, until the pipe closes."""
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        start = time.perf_counter()
        try:
            reply = decode(job)
        except Exception as exc:  # a decoder bug costs this image, never the process
            reply = DecodeReply(error=f"the decoder failed on this image "
                                      f"({type(exc).__name__})", source=job.source,
                                seconds=time.perf_counter() - start)
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return


def zygote(control: socket.socket) -> None:
    """A small, single-threaded server that forks decode workers (its own interpreter).

    Each message on ``control`` (a SOCK_SEQPACKET pair with the service) carries a pickled
    :data:`DecodeFn` and one descriptor, the worker's end of its pipe; the reply is the new
    worker's pid. Forking this process (the decoder imported, no threads, no model) costs a
    few milliseconds, where a fresh interpreter costs a second; and unlike multiprocessing's
    start methods nothing re-imports the service's ``__main__``. It exits when the service
    closes ``control`` (or dies), and its workers are killed with it (``PR_SET_PDEATHSIG``).
    """
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the service, which stops us
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, 1 << 16, 1)
        except OSError:
            return
        if not msg or not fds:
            return
        pid = os.fork()
        if pid == 0:  # the worker
            try:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                _die_with_parent()
                serve_jobs(Connection(fds[0]), pickle.loads(msg))
            finally:
                os._exit(0)
        os.close(fds[0])
        try:
            control.send(struct.pack("!i", pid))
        except OSError:
            return


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):  # Linux only; elsewhere the pipe's EOF ends it
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

