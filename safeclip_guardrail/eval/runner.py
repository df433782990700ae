"""``evaluate``: one encoder pass over a dataset, then every metric from those embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from safeclip_guardrail.eval.ablation import DEFAULT_KS, ablate
from safeclip_guardrail.eval.datasets import EvalDataset
from safeclip_guardrail.eval.e2e import DEFAULT_QUERIES, DEFAULT_REFUSAL_PATTERNS, run_e2e
from safeclip_guardrail.eval.embed import EmbeddedDataset, embed_dataset
from safeclip_guardrail.eval.metrics import (
    DEFAULT_SWEEP,
    class_masses_for,
    guard_metrics,
    threshold_sweep,
)
from safeclip_guardrail.eval.report import DatasetInfo, EvalReport, ImageRecord, library_versions

if TYPE_CHECKING:
    from safeclip_guardrail.guard import SafeCLIPGuard

__all__ = ["evaluate", "report_from_embeddings"]


def evaluate(guard: SafeCLIPGuard, dataset: EvalDataset, *, sweep: bool = True,
             sweep_thresholds: Sequence[float] = DEFAULT_SWEEP, ablations: bool = True,
             ks: Sequence[int | None] = DEFAULT_KS, chat_model: Any = None,
             queries: Sequence[str] = DEFAULT_QUERIES,
             refusal_patterns: Sequence[str] = DEFAULT_REFUSAL_PATTERNS,
             e2e_baseline: bool = True, show_progress: bool = True,
             embedded: EmbeddedDataset | None = None) -> EvalReport:
    """Evaluate ``guard`` on ``dataset``: guard-level metrics, sweep, ablations and (with
    ``chat_model``) the end-to-end refusal rates and latency overhead. ``embedded``:
    embeddings computed before (e.g. read from a corpus scan); no encoder pass then."""
    if embedded is None:
        embedded = embed_dataset(guard, dataset, show_progress=show_progress)
    return report_from_embeddings(
        guard, dataset, embedded, sweep=sweep, sweep_thresholds=sweep_thresholds,
        ablations=ablations, ks=ks, chat_model=chat_model, queries=queries,
        refusal_patterns=refusal_patterns, e2e_baseline=e2e_baseline,
        show_progress=show_progress,
    )


def report_from_embeddings(guard: SafeCLIPGuard, dataset: EvalDataset,
                           embedded: EmbeddedDataset, *, sweep: bool = True,
                           sweep_thresholds: Sequence[float] = DEFAULT_SWEEP,
                           ablations: bool = True, ks: Sequence[int | None] = DEFAULT_KS,
                           chat_model: Any = None, queries: Sequence[str] = DEFAULT_QUERIES,
                           refusal_patterns: Sequence[str] = DEFAULT_REFUSAL_PATTERNS,
                           e2e_baseline: bool = True, show_progress: bool = True) -> EvalReport:
    """The report for embeddings computed by :func:`embed_dataset` (no encoder forward)."""
    cfg, bank = guard.config, guard.bank
    labels = [s.label for s in embedded.samples]
    emb = embedded.embeddings.get(cfg.cls_source)
    masses = class_masses_for(emb, guard.text_embeddings, logit_scale=guard.encoder.logit_scale,
                              bank=bank)
    metrics = guard_metrics(masses, labels, bank=bank, config=cfg)
    verdicts = guard.score_embeddings(emb) if len(emb) else []
    images = [
        ImageRecord(**v.model_dump(exclude={"source", "image_sha256"}),
                    image_sha256=digest, source=str(s.path), path=str(s.path), label=s.label,
                    toxic=bank.is_toxic(s.label))
        for s, v, digest in zip(embedded.samples, verdicts, embedded.sha256, strict=True)
    ]
    sweep_points = (threshold_sweep(masses, labels, bank=bank, decision=cfg.decision,
                                    thresholds=sorted({*sweep_thresholds, cfg.threshold}))
                    if sweep else None)
    rows = (ablate(embedded.embeddings, labels, bank=bank,
                   text_embeddings=guard.text_embeddings,
                   logit_scale=guard.encoder.logit_scale, config=cfg, ks=ks)
            if ablations and len(emb) else [])
    e2e = None
    if chat_model is not None:
        toxic = np.array([bank.is_toxic(label) for label in labels], bool)
        e2e = run_e2e(guard, chat_model, embedded.samples, toxic=toxic.tolist(), queries=queries,
                      refusal_patterns=refusal_patterns, baseline=e2e_baseline,
                      show_progress=show_progress)
    info = DatasetInfo(
        source=dataset.source, kind=dataset.kind, n_files=dataset.n_files,
        n_images=len(embedded), n_unreadable=len(embedded.unreadable),
        label_counts=dataset.label_counts, label_map=dict(dataset.label_map),
        skipped=[str(f.path) for f in dataset.skipped],
    )
    return EvalReport(
        **dict(metrics), model=guard.model_name, library_versions=library_versions(),
        config=cfg, dataset=info, threshold=cfg.threshold, thresholds=dict(cfg.thresholds),
        cls_source=cfg.cls_source, decision=cfg.decision, sweep=sweep_points, ablations=rows,
        e2e=e2e, images=images, unreadable=list(embedded.unreadable),
    )
