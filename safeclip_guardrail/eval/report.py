"""The evaluation report: one pydantic schema, written as ``report.json``, ``report.md`` and PNGs.

``report.json`` holds every number, the guard config, the model id, library versions and a
per-image verdict list; ``EvalReport.model_validate_json`` reads it back (tests check that).
"""

from __future__ import annotations

from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from safeclip_guardrail.config import ClsSource, Decision, GuardConfig
from safeclip_guardrail.eval.ablation import AblationRow
from safeclip_guardrail.eval.datasets import UnreadableFile
from safeclip_guardrail.eval.e2e import E2EMetrics
from safeclip_guardrail.eval.metrics import GuardMetrics, SweepPoint
from safeclip_guardrail.result import ImageVerdict

__all__ = [
    "DatasetInfo",
    "EvalReport",
    "ImageRecord",
    "ReportFiles",
    "library_versions",
    "render_markdown",
    "write_report",
]

_PACKAGES = ("safeclip-guardrail", "torch", "transformers", "open_clip_torch", "numpy",
             "pillow", "langchain-core", "matplotlib")


class ImageRecord(ImageVerdict):
    """The guard's verdict on one dataset image, with its path and label."""

    path: str
    label: str
    toxic: bool
    """Whether the label is a toxic class (a positive)."""


class DatasetInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    kind: str
    n_files: int
    n_images: int
    """Files that could be read and were evaluated."""
    n_unreadable: int
    label_counts: dict[str, int]
    label_map: dict[str, str] = Field(default_factory=dict)
    skipped: list[str] = Field(default_factory=list)
    """Entries of the dataset's folders that were not checked (not images, hidden, symlinked
    folders, not regular files, outside every class folder); not evaluated."""


class EvalReport(GuardMetrics):
    """Everything ``safeclip eval`` measured (the schema of ``report.json``).

    The guard-level numbers (:class:`GuardMetrics`) sit at the top level of the JSON.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    model: str
    library_versions: dict[str, str]
    config: GuardConfig
    dataset: DatasetInfo
    threshold: float
    thresholds: dict[str, float]
    cls_source: ClsSource
    decision: Decision
    sweep: list[SweepPoint] | None = None
    ablations: list[AblationRow] = Field(default_factory=list)
    e2e: E2EMetrics | None = None
    images: list[ImageRecord]
    unreadable: list[UnreadableFile]


class ReportFiles(BaseModel):
    model_config = ConfigDict(frozen=True)

    json_path: Path
    markdown_path: Path
    plots: dict[str, Path]


def library_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def write_report(report: EvalReport, out_dir: str | Path, *, plots: bool = True) -> ReportFiles:
    """Write ``report.json``, the PNG plots (unless ``plots=False``) and ``report.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if plots:
        from safeclip_guardrail.eval import plots as p

        if report.roc.fpr:
            op = None
            if report.false_positive_rate is not None and report.defense_success_rate is not None:
                op = (report.false_positive_rate, report.defense_success_rate)
            written["roc"] = p.plot_roc(report.roc, report.roc_auc, out / "roc.png",
                                        operating_point=op)
        if report.sweep:
            written["sweep"] = p.plot_sweep(report.sweep, out / "sweep.png",
                                            current=report.threshold)
        written["confusion"] = p.plot_confusion(report.confusion, out / "confusion.png")
    json_path = out / "report.json"
    json_path.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text(render_markdown(report, plots={k: v.name for k, v in written.items()}),
                       encoding="utf-8")
    return ReportFiles(json_path=json_path, markdown_path=md_path, plots=written)


# ---------------------------------------------------------------------- markdown
def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return [*lines, ""]


def render_markdown(report: EvalReport, *, plots: dict[str, str] | None = None) -> str:
    """The report as Markdown tables (what ``safeclip eval`` prints without ``--out``)."""
    r = report
    lines = [
        "# SafeCLIP guard evaluation", "",
        f"- model: `{r.model}`; cls_source `{r.cls_source}`; decision `{r.decision}`; "
        f"threshold {r.threshold:g}"
        + (f" (per class: {', '.join(f'{k} {v:g}' for k, v in r.thresholds.items())})"
           if r.thresholds else ""),
        f"- dataset: `{r.dataset.source}` ({r.dataset.kind}): {r.n_images} images "
        f"({r.n_toxic} toxic, {r.n_benign} benign), {r.dataset.n_unreadable} unreadable, "
        f"{len(r.dataset.skipped)} skipped (not checked)",
        "",
        "## Guard-level results", "",
    ]
    lines += _table(["metric", "value"], [
        ["defense success rate (toxic flagged)", _pct(r.defense_success_rate)],
        ["false positive rate (benign flagged)", _pct(r.false_positive_rate)],
        ["zero-shot category accuracy", _pct(r.accuracy)],
        ["ROC AUC of the toxic score", _num(r.roc_auc)],
    ])
    lines += ["## Per class", ""]
    lines += _table(
        ["class", "kind", "images", "flagged", "detection rate", "flagged as class", "accuracy"],
        [[name, m.kind, str(m.n), str(m.flagged), _pct(m.detection_rate),
          str(m.flagged_as_label), _pct(m.accuracy)] for name, m in r.per_class.items()],
    )
    lines += ["## Confusion matrix (rows: label, columns: top class)", ""]
    lines += _table(["label \\ top", *r.confusion.labels],
                    [[lab, *map(str, row)] for lab, row in zip(r.confusion.labels,
                                                                r.confusion.matrix, strict=True)])
    if r.ablations:
        lines += ["## Ablations (same embeddings)", ""]
        lines += _table(["descriptors", "cls_source", "DSR", "FPR", "accuracy", "AUC"],
                        [[a.label, a.cls_source, _pct(a.defense_success_rate),
                          _pct(a.false_positive_rate), _pct(a.accuracy), _num(a.roc_auc)]
                         for a in r.ablations])
    if r.sweep:
        lines += ["## Threshold sweep (one threshold for every toxic class)", ""]
        lines += _table(["threshold", "DSR", "FPR", "flagged"],
                        [[f"{p.threshold:g}", _pct(p.defense_success_rate),
                          _pct(p.false_positive_rate), str(p.flagged)] for p in r.sweep])
    if r.e2e is not None:
        e = r.e2e
        lines += [f"## End to end ({e.chat_model}, intervention `{e.intervention}`)", ""]
        lines += _table(["", "with guard", "without guard"], [
            ["defense success rate (toxic refused)", _pct(e.defense_success_rate),
             _pct(e.defense_success_rate_without_guard)],
            ["false positive rate (benign refused)", _pct(e.false_positive_rate),
             _pct(e.false_positive_rate_without_guard)],
            ["mean latency (s)", _num(e.mean_latency_s, 4),
             _num(e.mean_latency_without_guard_s, 4)],
        ])
        lines += [f"Overhead: {_num(e.overhead_pct, 1)}% over all queries, "
                  f"{_num(e.overhead_benign_pct, 1)}% over benign queries.", ""]
    if r.unreadable:
        lines += ["## Unreadable files (not evaluated)", ""]
        lines += [f"- `{u.path}` ({u.label or 'no label'}): {u.error}"
                  for u in r.unreadable] + [""]
    if r.dataset.skipped:
        lines += ["## Skipped files (not checked: not images, hidden, links to folders...)", ""]
        lines += [f"- `{path}`" for path in r.dataset.skipped] + [""]
    for name, file in (plots or {}).items():
        lines += [f"![{name}]({file})", ""]
    versions = ", ".join(f"{k} {v}" for k, v in r.library_versions.items())
    lines += [f"_Generated {r.created_at}; {versions}._", ""]
    return "\n".join(lines)
