"""Ray Serve: the guard service on many replicas, GPUs and nodes behind one endpoint.

Each replica is the service app itself (:func:`safeclip_guardrail.serve.create_app`) built
inside the replica around its own guard, so every route, limit, API key check, health
probe and metric behaves as in ``safeclip serve``. Batching happens where the encoder is:
the app's micro-batcher coalesces the images of the requests a replica holds at once
(``max_ongoing_requests`` of them) into shared encoder forwards; Ray Serve's proxy spreads
requests over the replicas. ``/metrics`` reports the replica that answered (scrape each
replica, or use Ray's own metrics export, for cluster totals).

    from safeclip_guardrail.scale.serve import guard_application, serve_guard
    serve_guard(GuardConfig(model="llava-1.5"), replicas=8, num_gpus=1, port=8000)

The driver never loads the model; the replicas do (they need the model files, like the
workers of a corpus scan).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from safeclip_guardrail.errors import ConfigurationError, ServeDeployError, require

if TYPE_CHECKING:
    from safeclip_guardrail.config import GuardConfig

__all__ = ["GuardReplica", "ServeDeployError", "guard_application", "serve_guard"]

APP_NAME = "safeclip"


class GuardReplica:
    """One Ray Serve replica: loads the guard and builds the service app around it."""

    def __init__(self, config: GuardConfig, app_options: dict[str, Any]) -> None:
        from safeclip_guardrail.encoders._quiet import silence_transformers
        from safeclip_guardrail.guard import SafeCLIPGuard
        from safeclip_guardrail.serve import create_app

        silence_transformers()  # the replica's process is ours
        # (not ``self.app``: the ingress wrapper owns that name)
        self._asgi = create_app(SafeCLIPGuard.from_config(config), **app_options)

    def __serve_build_asgi_app__(self) -> Any:  # Ray Serve asks for the ASGI app here
        return self._asgi


def guard_application(config: GuardConfig, *, replicas: int = 1, num_gpus: float = 0,
                      num_cpus: float = 1, max_ongoing_requests: int = 64,
                      **app_options: Any) -> Any:
    """A bound Ray Serve application of ``replicas`` guard replicas (``num_gpus`` and
    ``num_cpus`` each); ``app_options`` go to ``create_app`` (``api_keys``, ``max_images``,
    ``max_wait_ms``...)."""
    if replicas < 1:
        msg = f"replicas must be >= 1, got {replicas}"
        raise ConfigurationError(msg)
    if num_gpus < 0 or num_cpus < 0:
        msg = f"num_gpus and num_cpus must be >= 0, got {num_gpus}, {num_cpus}"
        raise ConfigurationError(msg)
    if max_ongoing_requests < 1:
        msg = f"max_ongoing_requests must be >= 1, got {max_ongoing_requests}"
        raise ConfigurationError(msg)
    require("fastapi", package="fastapi", extra="serve", feature="Ray Serve")
    serve = require("ray.serve", package="ray[serve]", extra="ray", feature="Ray Serve")
    actor: dict[str, Any] = {"num_cpus": num_cpus}
    if num_gpus:
        actor["num_gpus"] = num_gpus
    deployment = serve.deployment(
        serve.ingress()(GuardReplica), name="SafeCLIPGuard", num_replicas=replicas,
        ray_actor_options=actor, max_ongoing_requests=max_ongoing_requests,
    )
    return deployment.bind(config, app_options)


def serve_guard(config: GuardConfig, *, host: str = "127.0.0.1", port: int = 8000,
                replicas: int = 1, num_gpus: float = 0, num_cpus: float = 1,
                address: str | None = None, blocking: bool = True,
                max_ongoing_requests: int = 64, **app_options: Any) -> Any:
    """Deploy the guard on Ray Serve at ``http://host:port/`` and (``blocking``) serve until
    interrupted, then take the deployment down (and the local cluster, if this call started
    it); returns the deployment handle when not blocking."""
    from safeclip_guardrail.scale._ray import connect

    app = guard_application(config, replicas=replicas, num_gpus=num_gpus, num_cpus=num_cpus,
                            max_ongoing_requests=max_ongoing_requests, **app_options)
    started = connect(address)
    import ray
    from ray import serve

    try:
        serve.start(http_options={"host": host, "port": port})
        try:
            handle = serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        except RuntimeError as exc:  # how Ray Serve reports a replica that failed to start
            msg = ("Ray Serve could not start the guard replicas "
                   f"({' '.join(str(exc).split())[:300]}); the replica's error is in the Ray logs "
                   "(logs/serve/ in the session folder, e.g. /tmp/ray/session_latest)")
            raise ServeDeployError(msg) from None
        if not blocking:
            return handle
        while True:  # until Ctrl-C (or SIGTERM, which the CLI turns into KeyboardInterrupt)
            time.sleep(3600)
    except BaseException:
        serve.shutdown()  # type: ignore[no-untyped-call]
        if started:
            ray.shutdown()
        raise
