"""Keep libtiff's C diagnostics off the process's stderr.

libtiff reports every problem of a corrupt file ("ZIPDecode: Decoding error at scanline 0",
"TIFFFillStrip: Read error on strip 1", ...) through a process-wide handler that writes to
file descriptor 2. Python's warning filters never see it, so a hostile or merely damaged
TIFF prints lines into a server's log for every request; over a fuzz run, hundreds.
Redirecting fd 2 around a decode is not an option: a server decodes on several threads, and
the redirect would swallow (or misplace) what every other thread writes meanwhile.

libtiff has its own switch instead: with its warning and error handlers set to NULL it
reports nothing and still returns its error codes, which Pillow turns into exceptions (and
the decoder into an :class:`~safeclip_guardrail.errors.ImageInputError` naming the problem).
The handlers are set once, on the libtiff that Pillow's ``_imaging`` extension loaded
(looked up through that extension's own handle, so a second libtiff in the process is left
alone), before any decode. (Pillow itself sets the warning handler to NULL before its
libtiff decodes, which is why the lines that reach stderr are libtiff's errors.)
"""

from __future__ import annotations

import contextlib
import ctypes
import threading

__all__ = ["silence"]

_lock = threading.Lock()
_done: list[bool] = []


def silence() -> bool:
    """Set libtiff's warning and error handlers to NULL; True when they are (idempotent).

    False where Pillow's libtiff cannot be reached through its extension (a Pillow built
    without libtiff, or a platform whose loader does not resolve a dependency's symbols
    through the extension's handle): libtiff then reports as before."""
    with _lock:
        if not _done:
            _done.append(_install())
        return _done[0]


def _install() -> bool:
    try:
        from PIL import _imaging, features

        if not features.check("libtiff"):
            return False
        lib = ctypes.CDLL(_imaging.__file__)
        handlers = [lib.TIFFSetWarningHandler, lib.TIFFSetErrorHandler]
    except (ImportError, OSError, AttributeError):
        return False
    for setter in handlers:
        setter.restype = ctypes.c_void_p
        setter.argtypes = [ctypes.c_void_p]
        setter(None)
    for name in ("TIFFSetWarningHandlerExt", "TIFFSetErrorHandlerExt"):
        with contextlib.suppress(AttributeError):  # NULL by default; reset in case
            ext = getattr(lib, name)
            ext.restype = ctypes.c_void_p
            ext.argtypes = [ctypes.c_void_p]
            ext(None)
    return True
