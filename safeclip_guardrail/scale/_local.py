"""The local engine: one process, one scorer, part files written as rows accumulate."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from safeclip_guardrail.scale.output import ScanOutput, output_schema, to_table
from safeclip_guardrail.scale.sources import Corpus, read_unit

if TYPE_CHECKING:
    import pyarrow as pa

    from safeclip_guardrail.batch_scorer import BatchScorer

__all__ = ["run_local"]


def run_local(corpus: Corpus, *, scorer: BatchScorer, output: ScanOutput, skip: frozenset[str],
              batch_size: int, rows_per_file: int, show_progress: bool,
              on_progress: Callable[[int], None] | None) -> None:
    """Score every unit of ``corpus`` in order; a part file every ``rows_per_file`` rows.

    Rows are written only in whole files, so an interruption (Ctrl-C, a crash) loses at
    most the rows not yet written, and ``--resume`` scans exactly those again.
    """
    import pyarrow as pa

    schema = output_schema(scorer.class_names,
                           embed_dim=scorer.embed_dim if scorer.embeddings else None)
    pending: list[pa.Table] = []
    pending_rows = done = 0
    bar = _bar(corpus, len(skip), enabled=show_progress)
    try:
        for unit in corpus.units:
            for batch in read_unit(unit, skip=skip, max_rows=batch_size):
                table = to_table(scorer(batch), schema)
                pending.append(table)
                pending_rows += table.num_rows
                done += table.num_rows
                bar.update(table.num_rows)
                if pending_rows >= rows_per_file:
                    output.write(pa.concat_tables(pending))
                    pending, pending_rows = [], 0
                if on_progress is not None:
                    on_progress(done)
        if pending:
            output.write(pa.concat_tables(pending))
    finally:
        bar.close()
        scorer.close()


def _bar(corpus: Corpus, already: int, *, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    total = corpus.rows
    return tqdm(total=None if total is None else max(total - already, 0), desc="scanning",
                unit="img", file=sys.stderr, leave=False, disable=None if enabled else True)
