"""``safeclip serve``: the guard as an HTTP service (OpenAI moderation, LiteLLM, /v1/guard).

API keys come from ``--api-key`` (repeatable) and from the ``SAFECLIP_API_KEYS``
environment variable (comma-separated); with none, the service is open, which is only
acceptable on loopback, so binding another address without a key is refused unless
``--allow-no-auth`` says it is intended. The address is bound before the model loads (a
busy port is a one-line error, exit 2), and "serving on" is printed once it listens.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
from typing import Any

from safeclip_guardrail.cli._common import add_guard_options, config_from_args
from safeclip_guardrail.cli._serve_ray import add_ray_options, check_ray_options, serve_on_ray
from safeclip_guardrail.encoders._quiet import silence_transformers
from safeclip_guardrail.errors import CliError

__all__ = ["register"]

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve", help="run the guard as an HTTP service (OpenAI moderation API, LiteLLM)",
        description="Serve POST /v1/moderations (OpenAI omni-moderation schema), POST "
                    "/beta/litellm_basic_guardrail_api (LiteLLM Generic Guardrail API), POST "
                    "/v1/guard, GET /healthz /readyz /metrics. Needs the [serve] extra.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY",
                   help="accepted API key (repeatable; also $SAFECLIP_API_KEYS, comma-separated)")
    p.add_argument("--allow-no-auth", action="store_true",
                   help="serve a non-loopback address without API keys")
    p.add_argument("--on-error", choices=["block", "raise", "allow"],
                   help="unreadable images: flag as safeclip/unreadable (block, default), "
                        "answer 400 (raise), or let them pass (allow)")
    p.add_argument("--max-images", type=int, default=32, metavar="N",
                   help="images per request (default 32)")
    p.add_argument("--max-body-mb", type=float, default=32.0, metavar="MB",
                   help="largest request body in MiB (default 32)")
    p.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS",
                   help="longest wait for more images before an encoder forward (default 5)")
    p.add_argument("--request-timeout", type=float, default=30.0, metavar="S",
                   help="seconds a request may wait for its verdicts (default 30)")
    p.add_argument("--decode-timeout", type=float, default=10.0, metavar="S",
                   help="seconds one image may take to decode before its decoder process is "
                        "killed and the image counts as unreadable (default 10)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    add_guard_options(p)
    add_ray_options(p)
    p.set_defaults(func=run)


def api_keys(args: argparse.Namespace) -> list[str]:
    """Keys from the flags and the environment, without blanks or duplicates."""
    from safeclip_guardrail.serve.app import API_KEYS_ENV

    raw = [*args.api_key, *os.environ.get(API_KEYS_ENV, "").split(",")]
    return list(dict.fromkeys(k.strip() for k in raw if k.strip()))


def run(args: argparse.Namespace) -> int:
    check_ray_options(args)
    try:
        import uvicorn  # noqa: F401  (checked here: the server starts in _serve)

        from safeclip_guardrail.serve import create_app
    except ImportError as exc:
        msg = (f"safeclip serve needs the serve extra ({exc}); install it with: "
               "pip install 'safeclip-guardrail[serve]'")
        raise CliError(msg) from None
    keys = api_keys(args)
    if not keys and args.host not in _LOOPBACK and not args.allow_no_auth:
        msg = (f"refusing to serve {args.host} without an API key: pass --api-key KEY "
               "(or set SAFECLIP_API_KEYS), or --allow-no-auth if that is intended")
        raise CliError(msg)
    if not 0 < args.port < 65536:
        msg = f"--port must be between 1 and 65535, got {args.port}"
        raise CliError(msg)
    if (args.max_images < 1 or args.max_body_mb <= 0 or args.request_timeout <= 0
            or args.decode_timeout <= 0):
        msg = ("--max-images, --max-body-mb, --request-timeout and --decode-timeout "
               "must be positive")
        raise CliError(msg)
    config = config_from_args(args)  # the files and the model dir, before the port and the model
    sock = bind(args.host, args.port)  # before the model loads: a busy port is a usage error
    if args.engine == "ray":  # the replicas load the model, and Ray binds the port itself
        sock.close()
        return serve_on_ray(args, api_keys=keys, app_options={
            "max_images": args.max_images, "max_body_bytes": int(args.max_body_mb * 1024 * 1024),
            "max_wait_ms": args.max_wait_ms, "request_timeout_s": args.request_timeout})
    with sock:
        from safeclip_guardrail.guard import SafeCLIPGuard

        silence_transformers()
        guard = SafeCLIPGuard.from_config(config)
        if args.on_error:
            guard = guard.with_options(on_error=args.on_error)
        app = create_app(guard, api_keys=keys, max_images=args.max_images,
                         max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                         max_wait_ms=args.max_wait_ms, request_timeout_s=args.request_timeout,
                         decode_timeout_s=args.decode_timeout)
        logging.basicConfig(level=args.log_level.upper(), format="%(message)s",
                            stream=sys.stderr)
        banner = (f"safeclip: serving {app.state.public_model_name} on "
                  f"http://{_shown(args.host)}:{args.port} "
                  f"({'API keys required' if keys else 'no API key'})")
        _serve(app, sock, banner=banner, log_level=args.log_level)
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (listening starts with the server), or a one-line
    :class:`CliError` saying why the address cannot be used."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        msg = (f"cannot serve on {host!r}: the address does not resolve ({exc}); pass "
               "--host with an address of this machine")
        raise CliError(msg) from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError as exc:
        sock.close()
        where = f"{_shown(host)}:{port}"
        if exc.errno == errno.EADDRINUSE:
            msg = (f"cannot serve on {where}: the port is already in use; stop what "
                   "listens there or pass another --port")
            raise CliError(msg) from None
        if exc.errno == errno.EACCES:
            msg = (f"cannot serve on {where}: permission denied (ports below 1024 "
                   "need privileges); pass another --port")
            raise CliError(msg) from None
        msg = (f"cannot serve on {where}: {exc.strerror or exc}; pass --host with an "
               "address of this machine")
        raise CliError(msg) from None
    return sock


def _serve(app: Any, sock: socket.socket, *, banner: str, log_level: str) -> None:
    """Run uvicorn on ``sock``; ``banner`` is printed once the socket listens, not before."""
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                print(banner, file=sys.stderr, flush=True)

    config = uvicorn.Config(app, log_level="debug" if log_level == "debug" else "warning",
                            access_log=False)
    AnnouncingServer(config).run(sockets=[sock])


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
