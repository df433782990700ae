"""Run an app on a real uvicorn server in a background thread (tests, notebooks, cookbook).

The listening socket is bound before the thread starts (port 0 = a free port chosen by the
OS), so there is no race between finding a port and using it.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn

from safeclip_guardrail.errors import GuardRuntimeError

__all__ = ["BackgroundServer"]


@dataclass
class BackgroundServer:
    """``with BackgroundServer(app) as srv: httpx.get(srv.url + "/healthz")``."""

    app: Any
    host: str = "127.0.0.1"
    port: int = 0
    startup_timeout_s: float = 30.0
    log_level: str = "warning"
    url: str = field(init=False, default="")
    _server: uvicorn.Server | None = field(init=False, default=None)
    _thread: threading.Thread | None = field(init=False, default=None)

    def start(self) -> BackgroundServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        config = uvicorn.Config(self.app, log_level=self.log_level, access_log=False,
                                lifespan="on", timeout_graceful_shutdown=2)
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=_run, args=(server, sock),
                                        name=f"uvicorn-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        while not server.started:
            if not self._thread.is_alive():
                msg = (f"the server on {self.url} stopped while starting: the app's startup "
                       "failed (e.g. its model could not load); the log above says why")
                raise GuardRuntimeError(msg)
            if time.monotonic() > deadline:
                self.stop()
                msg = (f"the server on {self.url} did not start within {self.startup_timeout_s} s; "
                       "raise startup_timeout_s if the app loads a large model")
                raise GuardRuntimeError(msg)
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _run(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn exits when the app's startup fails: start() reports it
        sock.close()
