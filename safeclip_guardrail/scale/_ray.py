"""The Ray Data engine: read tasks feed an actor pool of scorers; Parquet written in parallel.

The pipeline is the batch-inference pattern Ray Data is built for (and that CLIP embedding
pipelines such as NeMo Curator's use)::

    from_items(units) -> map_batches(read units)            CPU tasks, no CPU reserved
                      -> map_batches(ScorerActor, compute=ActorPoolStrategy(size=actors),
                                     num_gpus=..., num_cpus=...)   one guard per actor
                      -> write_parquet(out, filename_provider=part-<run>-...)   no CPU reserved

Ray Data streams: units are read while earlier batches are scored and written, and inside
each actor the scorer decodes the next images in threads while the encoder runs, so a GPU
actor gets ``num_cpus`` decode threads. Reading reserves no CPU so that actors may take
every core of a CPU-only machine (reading and writing are I/O, small next to decoding).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from safeclip_guardrail.errors import ConfigurationError, RayScanError, SafeCLIPError, require
from safeclip_guardrail.scale.output import ScanOutput, output_schema, to_table
from safeclip_guardrail.scale.sources import Corpus, Unit, read_unit

__all__ = ["ScorerActor", "actor_cpus", "connect", "new_local_cluster",
           "quiet_ray_data", "run_ray"]


class ScorerActor:
    """A :class:`~safeclip_guardrail.scale.scorer.BatchScorer` returning Arrow tables of the
    scan schema (the same table the local engine writes)."""

    def __init__(self, **scorer_kwargs: Any) -> None:
        from safeclip_guardrail.encoders._quiet import silence_transformers
        from safeclip_guardrail.scale.scorer import BatchScorer

        silence_transformers()  # the actor's process is ours
        self.scorer = BatchScorer(**scorer_kwargs)
        self.schema = output_schema(
            self.scorer.class_names,
            embed_dim=self.scorer.embed_dim if self.scorer.embeddings else None)

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        return to_table(self.scorer(batch), self.schema)


def _read_units(batch: dict[str, np.ndarray], *, skip: frozenset[str],
                max_rows: int) -> Iterator[dict[str, np.ndarray]]:
    for text in batch["unit"]:
        yield from read_unit(Unit.from_json(str(text)), skip=skip, max_rows=max_rows)


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), or start a local one; True when
    this call started Ray (the caller shuts it down).

    Ray's start-up lines ("Started a local Ray instance") stay out of the terminal: the
    driver's ``ray`` logger is set to WARNING. On a local cluster the workers' output stays in
    Ray's log files (a worker's error still ends the scan with one line); ``SAFECLIP_DEBUG=1``
    streams it to the terminal. A cluster you join streams it as Ray does by default."""
    ray = require("ray", package="ray", extra="ray", feature="scan-corpus --engine ray")
    if ray.is_initialized():
        return False
    try:
        if address:
            with warnings.catch_warnings():  # "connection timed out": our error says it
                warnings.simplefilter("ignore", UserWarning)
                ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        else:
            ray.init(include_dashboard=False, logging_level=logging.WARNING,
                     log_to_driver=_debug())
    except ConnectionError as exc:
        msg = (f"cannot reach the Ray cluster at {address}: {exc}. Check "
               "--address (e.g. ray://head:10001 or auto)")
        raise ConfigurationError(msg) from None
    return True


def new_local_cluster(address: str | None) -> bool:
    """Whether :func:`connect` with ``address`` starts a cluster on this machine (rather than
    joining one named by ``address`` or ``RAY_ADDRESS``)."""
    return not (address or os.environ.get("RAY_ADDRESS"))


def cluster_cpus(*, wait_s: float = 10.0) -> float:
    """The cluster's CPUs. A cluster just started may not have reported its resources yet:
    wait for them (up to ``wait_s``), rather than size the pool on none and have Ray Data
    warn that the job "will hang" when it will not."""
    import ray

    deadline = time.monotonic() + wait_s
    while True:
        resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        cpus = float(resources.get("CPU", 0.0))
        if cpus > 0 or time.monotonic() > deadline:
            return max(cpus, 1.0)
        time.sleep(0.1)


def _only_this_machine() -> bool:
    """The cluster is one node, this one (a local cluster, however it was started)."""
    import ray

    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        here = ray.get_runtime_context().get_node_id()
    except Exception:  # no answer from the cluster: keep Ray's defaults
        return False
    return len(nodes) == 1 and nodes[0].get("NodeID") == here


def actor_cpus(*, actors: int, cpus_per_actor: float | None, cluster: float,
               local: bool) -> float:
    """CPUs each actor reserves: ``cpus_per_actor``, or the cluster's CPUs shared among the
    actors (a fraction when there are more actors than CPUs). On a local cluster, which
    cannot grow, more than it has is refused: Ray Data would wait for them forever."""
    cpus = cpus_per_actor if cpus_per_actor is not None else cluster / actors
    if local and actors * cpus > cluster + 1e-9:
        msg = (f"{actors} actor(s) x {cpus:g} CPU(s) need {actors * cpus:g} CPUs; this machine's "
               f"Ray cluster has {cluster:g}. Lower --actors or --cpus-per-actor")
        raise ConfigurationError(msg)
    return cpus


def run_ray(corpus: Corpus, *, scorer_kwargs: dict[str, Any], output: ScanOutput,
            skip: frozenset[str], batch_size: int, actors: int, num_gpus: float,
            cpus_per_actor: float | None, local: bool = False,
            show_progress: bool = True) -> None:
    """Run the scan on the connected Ray cluster (see the module docstring).

    ``local``: the cluster is the one :func:`connect` started on this machine (its CPUs are
    all there is). ``show_progress``: Ray Data's progress bars on a terminal."""
    import ray
    import ray.data
    from ray.data.datasource import FilenameProvider

    cpus = actor_cpus(actors=actors, cpus_per_actor=cpus_per_actor, cluster=cluster_cpus(),
                      local=local)
    kwargs = {**scorer_kwargs, "decode_threads": max(2, int(cpus))}
    run_id = output.run_id

    class _Names(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{run_id}-{write_uuid}-{task_index:06d}.parquet"

    with quiet_ray_data(show_progress=show_progress):
        units = [{"unit": u.to_json()} for u in corpus.units]
        ds: Any = ray.data.from_items(units, override_num_blocks=max(1, len(units)))
        ds = ds.map_batches(_read_units, batch_size=1, batch_format="numpy", num_cpus=0,
                            fn_kwargs={"skip": skip, "max_rows": batch_size})
        ds = _score(ds, kwargs, batch_size=batch_size, actors=actors, num_gpus=num_gpus,
                    cpus=cpus, restarts=not (local or _only_this_machine()))
        try:
            ds.write_parquet(str(output.folder), filename_provider=_Names(file_format="parquet"),
                             ray_remote_args={"num_cpus": 0})
        except ray.exceptions.RayError as exc:
            raise _unwrap(exc) from None


def _score(ds: Any, kwargs: dict[str, Any], *, batch_size: int, actors: int, num_gpus: float,
           cpus: float, restarts: bool) -> Any:
    """The scorer actor pool. ``restarts=False`` (one machine: an actor that died, out of
    memory say, would die again; ``--resume`` continues) turns off Ray's actor restarts,
    whose set-up logs an error line per actor (ray-project/ray#53727). On a cluster they
    ride out a lost node. Ray 2.60 takes the option only through its deprecated
    ``ray_remote_args``: a Ray without them gets its default."""
    import ray.data

    options = dict(fn_constructor_kwargs=kwargs, batch_size=batch_size, batch_format="numpy",
                   compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=num_gpus or None,
                   num_cpus=cpus)
    if restarts:
        return ds.map_batches(ScorerActor, **options)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            return ds.map_batches(ScorerActor, max_restarts=0, **options)
    except TypeError:  # pragma: no cover - a Ray that no longer takes ray_remote_args
        return ds.map_batches(ScorerActor, **options)


@contextmanager
def quiet_ray_data(*, show_progress: bool) -> Iterator[None]:
    """Ray Data's console lines off while our scan runs, but for warnings: INFO (the plan,
    progress logged every few seconds when stdout is not a terminal) and errors (reported
    by the scan's own one-line error). Its full log stays in the Ray session's
    ``logs/ray-data`` folder; ``SAFECLIP_DEBUG=1`` leaves the console alone. Without
    ``show_progress`` its progress bars are off too."""
    import ray.data

    console = [h for h in logging.getLogger("ray.data").handlers if h.get_name() == "console"]
    if _debug():
        console = []
    levels = [h.level for h in console]
    noise = _DropRecords("Progress bars disabled")
    ctx = ray.data.DataContext.get_current()
    bars = ctx.enable_progress_bars
    for h in console:
        h.setLevel(max(h.level, logging.WARNING))
        h.addFilter(noise)
    ctx.enable_progress_bars = bars and show_progress
    try:
        with warnings.catch_warnings():
            # more actors than blocks of a small corpus: nothing for the user to change
            warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
            yield
    finally:
        ctx.enable_progress_bars = bars
        for h, level in zip(console, levels):
            h.setLevel(level)
            h.removeFilter(noise)


class _DropRecords(logging.Filter):
    """What Ray Data's console handler does not print during our scan: errors (a failed scan
    raises, and ends with one line of ours; Ray prints a stack trace per failure) and the
    notice that starts with ``prefix`` (about our own choice). Warnings still print."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR and not record.getMessage().startswith(self.prefix)


def _debug() -> bool:
    return bool(os.environ.get("SAFECLIP_DEBUG"))


def _unwrap(exc: BaseException) -> BaseException:
    """The error a worker raised (a ``SafeCLIPError`` as is), not Ray's wrapping of it."""
    cause = getattr(exc, "cause", None)
    seen = 0
    while cause is not None and getattr(cause, "cause", None) is not None and seen < 8:
        cause, seen = cause.cause, seen + 1
    if isinstance(cause, SafeCLIPError):
        return cause
    last = str(cause or exc).strip().splitlines()
    detail = last[-1] if last else type(exc).__name__
    kind = type(cause).__name__ if cause is not None else type(exc).__name__
    return RayScanError(f"the Ray scan failed in a worker: {kind}: {detail} (Ray's own messages: "
                        "SAFECLIP_DEBUG=1)")
