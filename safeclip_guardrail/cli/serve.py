"""``safeclip serve``: the guard as an HTTP service (OpenAI moderation, LiteLLM, /v1/guard).

API keys come from ``--api-key`` (repeatable) and from the ``SAFECLIP_API_KEYS``
environment variable (comma-separated); with none, the service is open, which is only
acceptable on loopback, so binding another address without a key is refused unless
``--allow-no-auth`` says it is intended.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from safeclip_guardrail.cli._common import CliError, add_guard_options, guard_from_args
from safeclip_guardrail.cli._serve_ray import add_ray_options, check_ray_options, serve_on_ray

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
        import uvicorn

        from safeclip_guardrail.serve import create_app
    except ImportError as exc:
        raise CliError(f"safeclip serve needs the serve extra ({exc}); install it with: "
                       "pip install 'safeclip-guardrail[serve]'") from None
    keys = api_keys(args)
    if not keys and args.host not in _LOOPBACK and not args.allow_no_auth:
        raise CliError(f"refusing to serve {args.host} without an API key: pass --api-key KEY "
                       "(or set SAFECLIP_API_KEYS), or --allow-no-auth if that is intended")
    if not 0 < args.port < 65536:
        raise CliError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_images < 1 or args.max_body_mb <= 0 or args.request_timeout <= 0:
        raise CliError("--max-images, --max-body-mb and --request-timeout must be positive")
    if args.engine == "ray":  # the replicas load the model, not this process
        return serve_on_ray(args, api_keys=keys, app_options={
            "max_images": args.max_images, "max_body_bytes": int(args.max_body_mb * 1024 * 1024),
            "max_wait_ms": args.max_wait_ms, "request_timeout_s": args.request_timeout})
    guard = guard_from_args(args)
    if args.on_error:
        guard = guard.with_options(on_error=args.on_error)
    app = create_app(guard, api_keys=keys, max_images=args.max_images,
                     max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                     max_wait_ms=args.max_wait_ms, request_timeout_s=args.request_timeout)
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    print(f"safeclip: serving {guard.model_name} on http://{args.host}:{args.port} "
          f"({'API keys required' if keys else 'no API key'})", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                access_log=False)
    return 0
