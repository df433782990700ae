"""``safeclip serve --engine ray``: the service as a Ray Serve deployment (``[ray]`` extra).

Kept apart from ``cli/serve.py`` so that the uvicorn path never imports Ray.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from safeclip_guardrail.cli._common import EXIT_OK, config_from_args
from safeclip_guardrail.errors import CliError

__all__ = ["add_ray_options", "check_ray_options", "serve_on_ray"]


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("Ray Serve (--engine ray)")
    g.add_argument("--engine", choices=["uvicorn", "ray"], default="uvicorn",
                   help="uvicorn: one process (default); ray: a Ray Serve deployment")
    g.add_argument("--replicas", type=int, default=None, metavar="N",
                   help="guard replicas behind the endpoint (default 1)")
    g.add_argument("--num-gpus", type=float, default=None, metavar="G",
                   help="GPUs per replica, e.g. 1 or 0.5 (default 0)")
    g.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join (default: RAY_ADDRESS or a new local cluster)")


def check_ray_options(args: argparse.Namespace) -> None:
    ray_only = [f for f, v in (("--replicas", args.replicas), ("--num-gpus", args.num_gpus),
                               ("--address", args.address)) if v is not None]
    if args.engine != "ray" and ray_only:
        msg = f"{', '.join(ray_only)} need --engine ray"
        raise CliError(msg)
    if args.replicas is not None and args.replicas < 1:
        msg = f"--replicas must be >= 1, got {args.replicas}"
        raise CliError(msg)
    if args.num_gpus is not None and not args.num_gpus >= 0:
        msg = f"--num-gpus must be >= 0, got {args.num_gpus}"
        raise CliError(msg)


def serve_on_ray(args: argparse.Namespace, *, api_keys: list[str],
                 app_options: dict[str, Any]) -> int:
    """Deploy and serve until interrupted; the model is loaded by the replicas only."""
    from safeclip_guardrail.scale._ray import connect
    from safeclip_guardrail.scale.serve import serve_guard

    config = config_from_args(args)
    if getattr(args, "on_error", None):
        config = config.replace(on_error=args.on_error)
    print(f"safeclip: deploying {args.replicas or 1} replica(s) of {config.model} on Ray Serve "
          f"at http://{args.host}:{args.port} "
          f"({'API keys required' if api_keys else 'no API key'})", file=sys.stderr)
    started = connect(args.address)
    # after ray.init, which installs its own SIGTERM handler: `kill` stops us like Ctrl-C
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        serve_guard(config, host=args.host, port=args.port, replicas=args.replicas or 1,
                    num_gpus=args.num_gpus or 0, blocking=True, api_keys=api_keys,
                    **app_options)
    finally:
        if started:
            import ray

            ray.shutdown()
    return EXIT_OK


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
