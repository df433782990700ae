"""The local engine: one process, one scorer, part files written as rows accumulate.

A part file is written when ``part_rows`` rows are waiting or ``part_seconds`` have passed
since the last one, whichever comes first: on a CPU, 8,192 rows are minutes of work, and a
crash must not cost that. On Ctrl-C the rows already scored are written before the
interrupt goes on, so ``--resume`` redoes at most the batch that was being scored.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from safeclip_guardrail.scale.output import ScanOutput, output_schema, to_table
from safeclip_guardrail.scale.sources import Corpus, read_unit

if TYPE_CHECKING:
    import pyarrow as pa

    from safeclip_guardrail.scale.scorer import BatchScorer

__all__ = ["run_local"]

_BAR_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} rows "
               "[{elapsed} elapsed, ETA {remaining}, {rate_fmt}]")
_BAR_FORMAT_OPEN = "{desc}: {n_fmt} rows [{elapsed} elapsed, {rate_fmt}]"  # total unknown (tar)


class _Parts:
    """Scored tables waiting to be written, and when the last part file was written."""

    def __init__(self, output: ScanOutput, *, rows: int, seconds: float) -> None:
        self.output = output
        self.max_rows = rows
        self.max_seconds = seconds
        self.tables: list[pa.Table] = []
        self.rows = 0
        self.last = time.monotonic()

    def add(self, table: pa.Table) -> None:
        self.tables.append(table)
        self.rows += table.num_rows
        if self.rows >= self.max_rows or time.monotonic() - self.last >= self.max_seconds:
            self.flush()

    def flush(self) -> None:
        """Write what waits as one part file. The list is emptied *before* the write, so an
        interrupt during it can lose those rows (``--resume`` scans them again) but never
        write them twice."""
        import pyarrow as pa

        tables, self.tables, self.rows = self.tables, [], 0
        self.last = time.monotonic()
        if tables:
            self.output.write(pa.concat_tables(tables))


def run_local(corpus: Corpus, *, scorer: BatchScorer, output: ScanOutput, skip: frozenset[str],
              batch_size: int, rows_per_file: int, part_seconds: float, show_progress: bool,
              on_progress: Callable[[int], None] | None) -> None:
    """Score every unit of ``corpus`` in order; a part file every ``rows_per_file`` rows or
    ``part_seconds`` seconds, whichever comes first.

    Rows are written only in whole files (atomically), so an interruption loses at most the
    rows not yet written, and ``--resume`` scans exactly those again.
    """
    schema = output_schema(scorer.class_names,
                           embed_dim=scorer.embed_dim if scorer.embeddings else None)
    parts = _Parts(output, rows=rows_per_file, seconds=part_seconds)
    done = 0
    bar = _bar(corpus, len(skip), enabled=show_progress)
    try:
        for unit in corpus.units:
            for batch in read_unit(unit, skip=skip, max_rows=batch_size):
                table = to_table(scorer(batch), schema)
                parts.add(table)
                done += table.num_rows
                bar.update(table.num_rows)
                if on_progress is not None:
                    on_progress(done)
        parts.flush()
    except KeyboardInterrupt:
        parts.flush()  # keep what was scored; the interrupt goes on
        raise
    finally:
        bar.close()
        scorer.close()


def _bar(corpus: Corpus, already: int, *, enabled: bool) -> Any:
    """A progress bar on stderr (terminals only) with rows/s and, when the corpus knows its
    size, the estimated time left."""
    from tqdm.auto import tqdm

    total = corpus.rows
    return tqdm(total=None if total is None else max(total - already, 0), desc="scanning",
                unit="rows", file=sys.stderr, leave=False, disable=None if enabled else True,
                bar_format=_BAR_FORMAT if total is not None else _BAR_FORMAT_OPEN,
                smoothing=0.1)
