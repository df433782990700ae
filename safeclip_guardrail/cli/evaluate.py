"""``safeclip eval DATA``: the paper's metrics on your images, with a report and plots.

DATA is a folder with one subfolder per class of the concept bank (``gun/``, ``neutral/``...)
or a CSV/JSONL manifest (``path,label[,query]``). Without ``--out`` the report's tables are
printed; with it, ``report.json``, ``report.md`` and PNG plots are written there. Exit 0
when the evaluation ran (whatever the numbers), 2 on usage or input errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from safeclip_guardrail.cli._common import (
    EXIT_OK,
    _positive_int,
    add_guard_options,
    check_output_folder,
    config_from_args,
    printable,
)
from safeclip_guardrail.encoders._quiet import silence_transformers
from safeclip_guardrail.errors import CliError

__all__ = ["load_chat_model", "register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval", help="measure defense success / false positives on a labelled dataset",
        description="Evaluate the guard on a labelled dataset: a folder with one subfolder per "
                    "class of the concept bank, or a CSV/JSONL manifest with path,label[,query]. "
                    "Every image is encoded once; ablations and the threshold sweep reuse the "
                    "embeddings.",
    )
    p.add_argument("data", metavar="DATA", help="class-folder dataset or .csv/.jsonl manifest")
    p.add_argument("--out", "-o", metavar="DIR",
                   help="write report.json, report.md and PNG plots here (default: print tables)")
    p.add_argument("--label-map", action="append", metavar="FOLDER=CLASS",
                   help="map a folder/label name onto a bank class (repeatable), "
                        "e.g. insulting_gesture=gesture")
    p.add_argument("--hod", action="store_true",
                   help="map the HOD benchmark's folder names (insulting_gesture -> gesture, "
                        "benign/safe -> neutral)")
    p.add_argument("--sweep", action="store_true",
                   help="also sweep one global threshold over 0.05..0.95 (DSR vs FPR)")
    p.add_argument("--no-ablations", action="store_true",
                   help="skip the K (descriptors per class) and cls_source ablations")
    p.add_argument("--no-plots", action="store_true", help="with --out: write no PNG plots")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.add_argument("--from-embeddings", metavar="SCAN",
                   help="read the images' embeddings from a 'safeclip scan-corpus --embeddings' "
                        "output instead of encoding them (a new bank, threshold or per-class "
                        "thresholds are evaluated without an image-encoder pass)")
    e = p.add_argument_group("end-to-end evaluation (--e2e)")
    e.add_argument("--e2e", action="store_true",
                   help="send every image with a query to a chat model, with and without the "
                        "guard, and measure refusals and latency overhead")
    e.add_argument("--chat-model", metavar="SPEC",
                   help="llava:<LLaVA dir or hub id> (local ChatLlava), or provider:model for "
                        "langchain's init_chat_model (e.g. openai:gpt-4o)")
    e.add_argument("--chat-model-factory", metavar="MODULE:ATTR",
                   help="import a LangChain chat model (or a function/class returning one)")
    e.add_argument("--queries", metavar="FILE",
                   help="queries, one per line, cycled over images without a manifest query")
    e.add_argument("--refusal-pattern", action="append", metavar="REGEX",
                   help="regex marking a refusal (repeatable; replaces the defaults)")
    e.add_argument("--max-new-tokens", type=_positive_int, metavar="N",
                   help="longest answer the chat model may generate (a refusal needs few "
                        "tokens; default: the model's own setting)")
    e.add_argument("--no-baseline", action="store_true",
                   help="do not also call the model without the guard (no overhead figure)")
    add_guard_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from safeclip_guardrail.eval import datasets as ds
    from safeclip_guardrail.eval.e2e import DEFAULT_QUERIES, DEFAULT_REFUSAL_PATTERNS
    from safeclip_guardrail.guard import SafeCLIPGuard

    config = config_from_args(args)
    label_map = {**(ds.HOD_LABEL_MAP if args.hod else {}), **ds.parse_label_map(args.label_map)}
    dataset = ds.load_dataset(args.data, bank=config.bank, label_map=label_map)
    queries = _read_queries(args.queries) if args.queries else DEFAULT_QUERIES
    patterns = args.refusal_pattern or DEFAULT_REFUSAL_PATTERNS
    if args.e2e and not (args.chat_model or args.chat_model_factory):
        msg = ("--e2e needs a chat model: --chat-model llava:<dir> or provider:model, "
               "or --chat-model-factory module:attr")
        raise CliError(msg)
    if args.e2e and args.from_embeddings:
        msg = "--e2e sends the images to a chat model; it cannot use --from-embeddings"
        raise CliError(msg)
    if (args.chat_model or args.chat_model_factory or args.max_new_tokens) and not args.e2e:
        msg = "--chat-model and --max-new-tokens are only used with --e2e; add --e2e"
        raise CliError(msg)
    if args.out:
        check_output_folder(args.out, option="--out")
    if args.out and not args.no_plots:
        from safeclip_guardrail.eval.plots import pyplot

        pyplot()  # fail now, not after the whole evaluation, when matplotlib is missing
    if args.e2e:
        from safeclip_guardrail.eval.e2e import compile_patterns

        compile_patterns(patterns)
    if args.from_embeddings:
        from safeclip_guardrail.eval.stored import check_scan

        check_scan(args.from_embeddings, config)  # before loading the model
    silence_transformers()
    guard = SafeCLIPGuard.from_config(config)
    chat = (load_chat_model(args.chat_model, args.chat_model_factory,
                            max_new_tokens=args.max_new_tokens) if args.e2e else None)
    embedded = None
    if args.from_embeddings:
        from safeclip_guardrail.eval.stored import load_scan_embeddings

        embedded = load_scan_embeddings(args.from_embeddings, dataset, guard)

    from safeclip_guardrail.eval import evaluate, write_report
    from safeclip_guardrail.eval.report import render_markdown

    report = evaluate(guard, dataset, sweep=args.sweep, ablations=not args.no_ablations,
                      chat_model=chat, queries=queries, refusal_patterns=patterns,
                      e2e_baseline=not args.no_baseline, show_progress=not args.no_progress,
                      embedded=embedded)
    out = sys.stdout
    if args.out:
        files = write_report(report, args.out, plots=not args.no_plots)
        out.write(_summary(report) + "\n")
        out.write(f"wrote {files.json_path}, {files.markdown_path}"
                  + "".join(f", {p}" for p in files.plots.values()) + "\n")
    else:
        out.write(render_markdown(report))
    if report.unreadable:
        print(f"safeclip: warning: {len(report.unreadable)} file(s) could not be read and were "
              "left out (listed in the report)", file=sys.stderr)
    warn_skipped(dataset)
    return EXIT_OK


def warn_skipped(dataset: Any) -> None:
    """One stderr line naming the files of a folder dataset that were skipped."""
    if dataset.skipped:
        names = ", ".join(f"{printable(str(f.path))} ({f.reason})" for f in dataset.skipped[:3])
        more = f" and {len(dataset.skipped) - 3} more" if len(dataset.skipped) > 3 else ""
        print(f"safeclip: warning: {len(dataset.skipped)} file(s) skipped, not checked: "
              f"{names}{more}", file=sys.stderr)


def load_chat_model(spec: str | None, factory: str | None, *,
                    max_new_tokens: int | None = None) -> Any:
    """A LangChain chat model from ``--chat-model`` or ``--chat-model-factory``, with its
    answer length capped at ``max_new_tokens`` when given."""
    limit: dict[str, Any] = {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}
    if factory:
        module_name, _, attr = factory.partition(":")
        if not module_name or not attr:
            msg = f"--chat-model-factory must be MODULE:ATTR, got {factory!r}"
            raise CliError(msg)
        try:
            obj = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            msg = f"cannot import {factory}: {exc}"
            raise CliError(msg) from None
        return _with_token_limit(_instantiate(obj, factory), max_new_tokens, factory)
    if spec is None:
        msg = "--e2e needs --chat-model or --chat-model-factory"
        raise CliError(msg)
    if spec.startswith("llava:"):
        from safeclip_guardrail.langchain import ChatLlava

        return ChatLlava.from_pretrained(spec.removeprefix("llava:"), **limit)
    try:
        from langchain.chat_models import init_chat_model
    except ImportError:
        msg = (f"--chat-model {spec} needs the 'langchain' package: "
               "pip install langchain, plus the provider's package "
               "(e.g. langchain-openai)")
        raise CliError(msg) from None
    options: dict[str, Any] = {} if max_new_tokens is None else {"max_tokens": max_new_tokens}
    return init_chat_model(spec, **options)


def _with_token_limit(model: Any, limit: int | None, name: str) -> Any:
    """``model`` with its answer-length field set (LangChain models call it ``max_tokens``,
    local ones often ``max_new_tokens``)."""
    if limit is None:
        return model
    fields = getattr(type(model), "model_fields", {})
    for field_name in ("max_new_tokens", "max_tokens"):
        if field_name in fields:
            return model.model_copy(update={field_name: limit})
    msg = (f"--max-new-tokens: {name} has no max_new_tokens or max_tokens field; "
           "set the answer length in your factory instead")
    raise CliError(msg)


def _instantiate(obj: Any, name: str) -> Any:
    from langchain_core.language_models import BaseChatModel

    if isinstance(obj, BaseChatModel):
        return obj
    if callable(obj):
        try:
            made = obj()
        except TypeError as exc:  # e.g. a function that needs arguments
            msg = (f"{name} is not a LangChain chat model, and calling it without "
                   f"arguments failed: {exc}")
            raise CliError(msg) from None
        if isinstance(made, BaseChatModel):
            return made
    msg = f"{name} is not a LangChain chat model or a factory returning one"
    raise CliError(msg)


def _read_queries(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        msg = f"queries file not found: {p}"
        raise CliError(msg)
    lines = [x.strip() for x in p.read_text(encoding="utf-8").splitlines()]
    queries = [x for x in lines if x and not x.startswith("#")]
    if not queries:
        msg = f"queries file {p} has no queries (one per line)"
        raise CliError(msg)
    return queries


def _summary(report: Any) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    auc = "n/a" if report.roc_auc is None else f"{report.roc_auc:.3f}"
    line = (f"{report.n_images} images ({report.n_toxic} toxic, {report.n_benign} benign): "
            f"defense success {pct(report.defense_success_rate)}, false positives "
            f"{pct(report.false_positive_rate)}, accuracy {pct(report.accuracy)}, AUC {auc}")
    if report.e2e is not None:
        e = report.e2e
        over = "n/a" if e.overhead_pct is None else f"{e.overhead_pct:.1f}%"
        line += (f"\nend to end ({e.chat_model}): defense success "
                 f"{pct(e.defense_success_rate)}, false positives {pct(e.false_positive_rate)}, "
                 f"overhead {over}")
    return line
