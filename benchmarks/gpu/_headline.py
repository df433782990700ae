"""The figures docs/performance.md needs, pulled out of the report (``None`` where a section
did not run): printed last, so the end of the device call's output shows them."""

from __future__ import annotations

from typing import Any


def _get(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


PATHS = {
    "gpu": "environment.gpu.name", "driver": "environment.gpu.driver",
    "torch": "environment.torch", "transformers": "environment.packages.transformers",
    "throughput_bf16_best_img_s": "throughput.bfloat16_best_images_per_s",
    "batch1_bf16_eager_p50_ms": "batch1_latency.bfloat16.eager.p50_ms",
    "batch1_bf16_graph_p50_ms": "batch1_latency.bfloat16.cuda_graph.p50_ms",
    "whole_over_raw_b1": "whole_path.1.whole_path_over_raw_encoder",
    "whole_over_raw_b32": "whole_path.32.whole_path_over_raw_encoder",
    "whole_over_raw_b1_graph": "whole_path.1_cuda_graph.whole_path_over_raw_encoder",
    "forward_over_raw_b32": "whole_path.32.whole_path_forward_over_raw_encoder",
    "fp16_verdicts_identical": "equivalence.float16.verdicts_identical",
    "bf16_verdicts_identical": "equivalence.bfloat16.verdicts_identical",
    "bf16_min_cosine": "equivalence.bfloat16.min_cosine_final",
    "pdf_whole_path_ms_per_page": "pdf_pages.whole_path_ms_per_page",
    "next_views_all_three": "llava_next_fused.pictures.all_three_in_one_prompt.views",
    "next_fused_added_pct_of_tower":
        "llava_next_fused.pictures.all_three_in_one_prompt.fused_added_pct_of_tower",
    "next_separate_over_fused":
        "llava_next_fused.pictures.all_three_in_one_prompt.separate_over_fused",
    "next_chat_fused_added_pct": "llava_next_fused.chat.fused_added_pct",
    "next_chat_separate_added_pct": "llava_next_fused.chat.separate_added_pct",
    "llava15_fused_added_latency_pct": "llava15_overhead.ratios_vs_none.fused.added_latency_pct",
    "llava15_fused_added_ttft_pct": "llava15_overhead.ratios_vs_none.fused.added_ttft_pct",
    "llava15_standalone_added_latency_pct":
        "llava15_overhead.ratios_vs_none.standalone.added_latency_pct",
    "cuda_tests": "cuda_tests.summary",
}


def _round(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def headline(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {key: _round(_get(data, path)) for key, path in PATHS.items()}
    for shape, row in (_get(data, "views.shapes") or {}).items():
        out[f"views_{shape}"] = {k: row.get(k) for k in (
            "views_per_image", "views_over_centre_crop", "views_images_per_s")}
    for kind, row in (_get(data, "forwarding.inputs") or {}).items():
        out[f"forward_over_judge_{kind}"] = row.get("forward_over_judge")
    out["section_status"] = data.get("section_status")
    return out
