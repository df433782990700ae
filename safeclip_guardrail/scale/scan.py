"""``scan_corpus``: verdicts for a whole image corpus, written as Parquet, locally or on Ray."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from safeclip_guardrail.config import GuardConfig, build_config
from safeclip_guardrail.errors import ConfigurationError, require
from safeclip_guardrail.scale.output import ScanOutput
from safeclip_guardrail.scale.sources import discover

if TYPE_CHECKING:
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = ["ScanSummary", "scan_corpus"]

Engine = Literal["local", "ray"]


class ScanSummary(BaseModel):
    """What one ``scan_corpus`` run did; :meth:`line` is the CLI's closing line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    output: str
    engine: Engine
    rows: int
    """Rows scored and written by this run."""
    already_done: int
    """Rows found in the output folder and skipped (``resume``)."""
    flagged: int
    """Readable images flagged (unreadable ones count under ``errors``)."""
    flagged_by_class: dict[str, int]
    errors: int
    """Rows whose image could not be read (error rows)."""
    seconds: float
    """Wall time of the scan: local, after the model is loaded; Ray, including the actors'
    start-up (each loads the model), not the cluster's."""
    images_per_s: float
    files: list[str]
    """The Parquet files this run wrote."""
    non_image_files: int = 0
    """Entries of source folders skipped (not images, hidden, symlinked folders, not regular
    files: the rules of the one folder walk, :mod:`safeclip_guardrail.images.discover`)."""
    notes: list[str] = Field(default_factory=list)

    def line(self) -> str:
        """One line: rows, flagged per class, errors, images/s."""
        per_class = ", ".join(f"{k} {v}" for k, v in self.flagged_by_class.items())
        text = (f"{self.rows} images in {self.seconds:.1f} s ({self.images_per_s:.1f} img/s, "
                f"{self.engine}): {self.flagged} flagged" + (f" ({per_class})" if per_class else "")
                + f", {self.errors} unreadable")
        if self.already_done:
            text += f"; {self.already_done} already in the output"
        if self.non_image_files:
            text += f"; {self.non_image_files} file(s) in folders skipped"
        return text + f"; wrote {len(self.files)} file(s) to {self.output}"


def scan_corpus(source: str | Path | Sequence[str | Path], output: str | Path, *,
                engine: Engine = "local", actors: int = 1, num_gpus: float = 0,
                cpus_per_actor: float | None = None, batch_size: int | None = None,
                embeddings: bool = False, resume: bool = False, address: str | None = None,
                image_column: str | None = None, path_column: str | None = None,
                id_column: str | None = None, root: str | Path | None = None,
                rows_per_file: int = 8192, part_seconds: float = 5.0, show_progress: bool = True,
                on_progress: Callable[[int], None] | None = None,
                guard: SafeCLIPGuard | None = None, **guard_options: Any) -> ScanSummary:
    """Scan folders, Parquet files, WebDataset shards or manifests into Parquet verdicts.

    ``guard_options`` are those of ``SafeCLIPGuard.from_pretrained`` (``model``,
    ``concepts``, ``threshold``, ``config``...); ``guard`` (local engine) uses a guard you
    built. ``engine="ray"`` runs ``actors`` scorer actors (``num_gpus`` and
    ``cpus_per_actor`` each; default CPUs: the cluster's divided by ``actors``) on the
    cluster at ``address`` (None: ``RAY_ADDRESS`` or a new local one). ``resume`` skips the
    ids already in ``output``. ``on_progress(rows_done)`` is called after every local batch.
    ``root``: the folder every path read from the data must lie in (symlinks resolved;
    None: each folder source is its own root, a manifest's or Parquet file's folder is
    theirs); a path outside is an error row. A bad row is an error row, never a failed run.
    The local engine writes a part file every ``rows_per_file`` rows or ``part_seconds``
    seconds, whichever comes first, so an interruption loses at most that much work.
    """
    if engine not in ("local", "ray"):
        msg = f"engine must be 'local' or 'ray', got {engine!r}"
        raise ConfigurationError(msg)
    if actors < 1:
        msg = f"actors must be >= 1, got {actors}"
        raise ConfigurationError(msg)
    if num_gpus < 0:
        msg = f"num_gpus must be >= 0, got {num_gpus}"
        raise ConfigurationError(msg)
    if rows_per_file < 1:
        msg = f"rows_per_file must be >= 1, got {rows_per_file}"
        raise ConfigurationError(msg)
    if not part_seconds > 0:
        msg = f"part_seconds must be > 0, got {part_seconds}"
        raise ConfigurationError(msg)
    if engine == "ray":  # checked first: it brings pyarrow along
        require("ray", package="ray", extra="ray", feature="scan-corpus --engine ray")
    require("pyarrow", package="pyarrow", extra="parquet", feature="scan-corpus (Parquet output)")
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    config = guard.config if guard is not None else _config(guard_options)
    if guard is not None and guard_options:
        msg = "pass either guard= or guard options, not both"
        raise ConfigurationError(msg)
    if batch_size is not None:
        config = config.replace(batch_size=batch_size)
        if guard is not None:
            guard = guard.with_options(batch_size=batch_size)
    corpus = discover(sources, image_column=image_column, path_column=path_column,
                      id_column=id_column, root=root, max_bytes=config.images.max_bytes)
    out = ScanOutput(output)
    skip, notes = out.prepare(ScanOutput.describe(config, embeddings=embeddings), resume=resume)
    started = time.perf_counter()
    if engine == "local":
        from safeclip_guardrail.encoders._quiet import quiet_transformers
        from safeclip_guardrail.scale._local import run_local
        from safeclip_guardrail.scale.scorer import BatchScorer

        with quiet_transformers():  # a library call: the caller's logging is left as it was
            scorer = (BatchScorer.from_guard(guard, embeddings=embeddings) if guard is not None
                      else BatchScorer(config=config, embeddings=embeddings))
        started = time.perf_counter()  # the model is loaded: time the scan itself
        run_local(corpus, scorer=scorer, output=out, skip=skip, batch_size=config.batch_size,
                  rows_per_file=rows_per_file, part_seconds=part_seconds,
                  show_progress=show_progress,
                  on_progress=on_progress)
    else:
        from safeclip_guardrail.scale import _ray

        started_ray = _ray.connect(address)
        try:
            started = time.perf_counter()
            _ray.run_ray(corpus, scorer_kwargs={"config": config, "embeddings": embeddings},
                         output=out, skip=skip, batch_size=config.batch_size, actors=actors,
                         num_gpus=num_gpus, cpus_per_actor=cpus_per_actor,
                         local=started_ray and _ray.new_local_cluster(address),
                         show_progress=show_progress)
        finally:
            if started_ray:
                import ray

                ray.shutdown()
    seconds = time.perf_counter() - started
    files = out.run_files()
    counts = ScanOutput.count(files)
    return ScanSummary(
        output=str(out.folder), engine=engine, rows=counts.rows, already_done=len(skip),
        flagged=counts.flagged, flagged_by_class=counts.flagged_by_class, errors=counts.errors,
        seconds=round(seconds, 3), images_per_s=round(counts.rows / seconds, 2) if seconds else 0.0,
        files=[str(f) for f in files], non_image_files=len(corpus.skipped), notes=notes,
    )


def _config(options: dict[str, Any]) -> GuardConfig:
    """The guard configuration ``from_pretrained(**options)`` would build, without loading."""
    opts = dict(options)
    base = opts.pop("config", None)
    if isinstance(base, (str, Path)):
        base = GuardConfig.from_file(base)
    return build_config(base, **opts)
