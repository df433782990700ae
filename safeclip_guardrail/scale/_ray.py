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

from collections.abc import Iterator
from typing import Any

import numpy as np

from safeclip_guardrail.errors import ConfigurationError, SafeCLIPError, require
from safeclip_guardrail.scale.output import ScanOutput, output_schema, to_table
from safeclip_guardrail.scale.sources import Corpus, Unit, read_unit

__all__ = ["RayScanError", "ScorerActor", "connect", "run_ray"]


class ScorerActor:
    """A :class:`~safeclip_guardrail.batch_scorer.BatchScorer` returning Arrow tables of the
    scan schema (the same table the local engine writes)."""

    def __init__(self, **scorer_kwargs: Any) -> None:
        from safeclip_guardrail.batch_scorer import BatchScorer
        from safeclip_guardrail.encoders._quiet import silence_transformers

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
    this call started Ray (the caller shuts it down)."""
    ray = require("ray", package="ray", extra="ray", feature="scan-corpus --engine ray")
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(include_dashboard=False)
    except ConnectionError as exc:
        raise ConfigurationError(f"cannot reach the Ray cluster at {address}: {exc}. Check "
                                 "--address (e.g. ray://head:10001 or auto)") from None
    return True


def cluster_cpus() -> int:
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return int(resources.get("CPU", 1))


def run_ray(corpus: Corpus, *, scorer_kwargs: dict[str, Any], output: ScanOutput,
            skip: frozenset[str], batch_size: int, actors: int, num_gpus: float,
            cpus_per_actor: float | None) -> None:
    """Run the scan on the connected Ray cluster (see the module docstring)."""
    import ray
    import ray.data
    from ray.data.datasource import FilenameProvider

    cpus = cpus_per_actor if cpus_per_actor is not None else max(1, cluster_cpus() // actors)
    kwargs = {**scorer_kwargs, "decode_threads": max(2, int(cpus))}
    run_id = output.run_id

    class _Names(FilenameProvider):
        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{run_id}-{write_uuid}-{task_index:06d}.parquet"

    units = [{"unit": u.to_json()} for u in corpus.units]
    ds: Any = ray.data.from_items(units, override_num_blocks=max(1, len(units)))
    ds = ds.map_batches(_read_units, batch_size=1, batch_format="numpy", num_cpus=0,
                        fn_kwargs={"skip": skip, "max_rows": batch_size})
    ds = ds.map_batches(
        ScorerActor, fn_constructor_kwargs=kwargs, batch_size=batch_size,
        batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=num_gpus or None, num_cpus=cpus,
    )
    try:
        ds.write_parquet(str(output.folder), filename_provider=_Names(file_format="parquet"),
                         ray_remote_args={"num_cpus": 0})
    except ray.exceptions.RayError as exc:
        raise _unwrap(exc) from None


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
    return RayScanError(f"the Ray scan failed in a worker: {kind}: {detail}")


class RayScanError(SafeCLIPError, RuntimeError):
    """A Ray worker failed for a reason other than an unreadable image (those are rows)."""
