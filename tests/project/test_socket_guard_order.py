"""The test session imports uvloop before pytest-socket can disable sockets (root conftest).

uvloop keeps the ``socket.socket`` it sees at its first import; under pytest-socket's
stand-in, every uvicorn server started later in the process accepts connections and never
reads them. These tests show the hazard in a fresh interpreter and that the order the
conftest sets avoids it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import sys
import pytest_socket
{before}
pytest_socket.disable_socket(allow_unix_socket=True)
import uvloop  # a first import here keeps the stand-in; a second one changes nothing
pytest_socket.enable_socket()
sys.path.insert(0, {root!r})
import httpx
from safeclip_guardrail.serve import BackgroundServer, create_app
from tests._serve_helpers import planted_guard
_, guard = planted_guard()
with BackgroundServer(create_app(guard)) as srv:
    try:
        print(httpx.get(srv.url + "/healthz", timeout=5).status_code)
    except httpx.HTTPError as exc:
        print(type(exc).__name__)
"""


def _served(before: str) -> str:
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(before=before, root=str(ROOT))],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop does not run on Windows")
def test_uvloop_imported_first_keeps_servers_answering_after_sockets_were_disabled():
    pytest.importorskip("uvloop")
    assert "uvloop" in sys.modules  # the root conftest imported it before any test ran
    assert _served("import uvloop") == "200"  # the conftest's order
    assert _served("") == "ReadTimeout"  # the hazard it avoids
