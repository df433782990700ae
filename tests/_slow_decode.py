"""Decode functions for the service's decode processes, with deliberate misbehaviour.

They are module-level so a decode process can import them by name. Images whose bytes end
with a marker misbehave (the marker follows a real image, so the extraction layer accepts
them); everything else is decoded exactly as the guard does (``decode_job``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from safeclip_guardrail.serve._decode_worker import DecodeJob, DecodeReply, decode_job

SLEEP = b"\x00SLEEP"
"""A decode that sleeps a minute: it overruns any budget."""
CRASH = b"\x00CRASH"
"""A decode that kills its process (a decoder segfault)."""
SLOW = b"\x00SLOW:"
"""``image + SLOW + seconds``: the decode takes that many more seconds (and says so in its
reply's ``seconds``), then decodes the image: a slow but legal image."""
HOLD = b"\x00HOLD:"
"""``image + HOLD + path``: the decode writes ``path.started``, waits until ``path`` exists
(at most a minute), then decodes the image."""


def misbehaving(job: DecodeJob) -> DecodeReply:
    data = job.data
    if data.endswith(SLEEP):
        time.sleep(60)
    if data.endswith(CRASH):
        os._exit(139)
    at = data.rfind(SLOW)
    if at >= 0:
        seconds = float(data[at + len(SLOW):].decode())
        time.sleep(seconds)
        reply = decode_job(dataclasses.replace(job, data=data[:at]))
        return dataclasses.replace(reply, seconds=reply.seconds + seconds)
    at = data.rfind(HOLD)
    if at >= 0:
        gate = Path(data[at + len(HOLD):].decode())
        Path(f"{gate}.started").touch()
        end = time.monotonic() + 60
        while not gate.exists() and time.monotonic() < end:
            time.sleep(0.01)
        return decode_job(dataclasses.replace(job, data=data[:at]))
    return decode_job(job)
