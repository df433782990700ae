"""Evaluate and calibrate a guard on your own images.

- :func:`load_dataset` reads a folder with one subfolder per class, or a CSV/JSONL manifest;
- :func:`evaluate` embeds every image once and computes the paper's metrics (defense
  success rate, false positive rate, zero-shot accuracy, ROC/AUC, threshold sweep, ablations
  over descriptors per class and ``cls_source``) and, given a LangChain chat model, the
  end-to-end refusal rates and latency overhead;
- :func:`write_report` writes ``report.json``, ``report.md`` and PNG plots;
- :func:`calibrate` finds the threshold(s) meeting a target false-positive rate;
- :func:`load_scan_embeddings` reads the embeddings a corpus scan stored, so both of the
  above run again (new threshold, new bank) without an image-encoder pass.

The same functions run behind ``safeclip eval`` and ``safeclip calibrate``.
"""

from safeclip_guardrail.errors import CalibrationError
from safeclip_guardrail.eval.ablation import DEFAULT_KS, AblationRow, ablate
from safeclip_guardrail.eval.calibrate import (
    CalibrationResult,
    calibrate,
    calibrate_thresholds,
)
from safeclip_guardrail.eval.datasets import (
    HOD_LABEL_MAP,
    EvalDataset,
    Sample,
    UnreadableFile,
    load_dataset,
)
from safeclip_guardrail.eval.e2e import (
    DEFAULT_QUERIES,
    DEFAULT_REFUSAL_PATTERNS,
    E2EMetrics,
    E2ERecord,
    run_e2e,
)
from safeclip_guardrail.eval.embed import EmbeddedDataset, embed_dataset
from safeclip_guardrail.eval.metrics import (
    DEFAULT_SWEEP,
    ClassMetrics,
    ConfusionMatrix,
    GuardMetrics,
    RocCurve,
    SweepPoint,
    guard_metrics,
    roc_curve,
    threshold_sweep,
)
from safeclip_guardrail.eval.report import (
    EvalReport,
    ImageRecord,
    ReportFiles,
    render_markdown,
    write_report,
)
from safeclip_guardrail.eval.runner import evaluate, report_from_embeddings
from safeclip_guardrail.eval.stored import load_scan_embeddings

__all__ = [
    "DEFAULT_KS",
    "DEFAULT_QUERIES",
    "DEFAULT_REFUSAL_PATTERNS",
    "DEFAULT_SWEEP",
    "HOD_LABEL_MAP",
    "AblationRow",
    "CalibrationError",
    "CalibrationResult",
    "ClassMetrics",
    "ConfusionMatrix",
    "E2EMetrics",
    "E2ERecord",
    "EmbeddedDataset",
    "EvalDataset",
    "EvalReport",
    "GuardMetrics",
    "ImageRecord",
    "ReportFiles",
    "RocCurve",
    "Sample",
    "SweepPoint",
    "UnreadableFile",
    "ablate",
    "calibrate",
    "calibrate_thresholds",
    "embed_dataset",
    "evaluate",
    "guard_metrics",
    "load_dataset",
    "load_scan_embeddings",
    "render_markdown",
    "report_from_embeddings",
    "roc_curve",
    "run_e2e",
    "threshold_sweep",
    "write_report",
]
