"""On a real local Ray cluster (started once per test run): scan-corpus gives the same table
as check_batch and as the local engine and resumes an interrupted scan; a Ray Serve
deployment of the service answers /v1/moderations through the openai SDK."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.cli import main
from safeclip_guardrail.scale import scan_corpus
from tests._corpus import folder, parquet, png

ray = pytest.importorskip("ray")

# The driver talks to its own cluster over loopback only.
pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"]),
              pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # Ray's own


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    yield
    ray.shutdown()


def _table(out: Path) -> pa.Table:
    return pq.read_table(sorted(out.glob("*.parquet"))).sort_by("id")


@pytest.fixture
def model_args(tiny_clip_dir: Path) -> list[str]:
    return ["--model", str(tiny_clip_dir), "--device", "cpu", "--dtype", "float32",
            "--no-progress", "--batch-size", "4"]


def _assert_matches(rows: dict[str, dict[str, Any]], sources: dict[str, object],
                    guard: SafeCLIPGuard) -> None:
    reference = guard.check_batch(list(sources.values()))
    assert set(rows) == set(sources)
    for key, verdict in zip(sources, reference):
        row = rows[key]
        assert (row["flagged"], row["category"], row["error"], row["image_sha256"]) == \
            (verdict.flagged, verdict.category, verdict.error, verdict.image_sha256), key
        if verdict.error is None:
            assert row["top_category"] == verdict.top_category
            assert row["threshold"] == verdict.threshold
            for name, mass in verdict.scores.items():
                assert row[f"score_{name}"] == pytest.approx(mass, abs=1e-5)


def test_ray_scan_matches_check_batch_and_local(ray_cluster: None, tiny_clip_dir: Path,
                                                model_args: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    images = [png(i) for i in range(8)]
    root = folder(tmp_path / "f", images)  # 8 images, one of them without an extension,
    pq_file = parquet(tmp_path / "c.parquet", images[:3])  # a corrupt .jpg; 3 rows + 1 empty
    code = main(["scan-corpus", str(root), str(pq_file), "--out", str(tmp_path / "ray"),
                 "--engine", "ray", "--actors", "2", "--cpus-per-actor", "1", "--embeddings",
                 *model_args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.startswith("13 images in ") and "2 unreadable" in captured.out
    table = _table(tmp_path / "ray")
    rows = {r["id"]: r for r in table.to_pylist()}
    sources: dict[str, object] = {str(p): p for p in sorted(root.rglob("*"))
                                  if p.is_file() and p.suffix != ".txt"
                                  and not p.name.startswith(".")}
    sources.update({f"row-{i}": b for i, b in enumerate([*images[:3], b""])})
    guard = SafeCLIPGuard.from_pretrained(str(tiny_clip_dir), device="cpu", dtype="float32")
    _assert_matches(rows, sources, guard)
    assert rows[str(root / "broken.jpg")]["category"] == "unreadable"
    assert "Truncated" in rows[str(root / "broken.jpg")]["error"]
    # --engine local writes the same table (same schema, same rows, same scores)
    assert main(["scan-corpus", str(root), str(pq_file), "--out", str(tmp_path / "local"),
                 "--embeddings", *model_args]) == 0
    local = _table(tmp_path / "local")
    assert local.schema == table.schema
    exact = [c for c in table.column_names if not c.startswith(("score_", "toxic", "embedding"))]
    assert local.select(exact).equals(table.select(exact))
    for name in table.column_names:
        if name.startswith(("score_", "toxic")):
            for a, b in zip(local.column(name).to_pylist(), table.column(name).to_pylist()):
                assert (a is None and b is None) or a == pytest.approx(b, abs=1e-5)


def test_ray_resumes_an_interrupted_scan(ray_cluster: None, tiny_clip_dir: Path,
                                         tmp_path: Path) -> None:
    root = folder(tmp_path / "f", [png(i) for i in range(9)])  # 10 rows
    out = tmp_path / "out"
    options = {"model": str(tiny_clip_dir), "device": "cpu", "dtype": "float32"}

    def interrupt(done: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        scan_corpus(root, out, batch_size=2, rows_per_file=2, show_progress=False,
                    on_progress=interrupt, **options)
    assert _table(out).num_rows == 4
    summary = scan_corpus(root, out, engine="ray", batch_size=2, resume=True,
                          show_progress=False, **options)
    assert (summary.already_done, summary.rows) == (4, 6)
    table = _table(out)
    ids = table.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 10
    assert table.column("error").null_count == 9  # the corrupt file: one error row
    again = scan_corpus(root, out, resume=True, show_progress=False, **options)
    assert again.rows == 0 and again.already_done == 10


def test_ray_scans_a_hostile_corpus_like_the_local_engine(ray_cluster: None,
                                                         tiny_clip_dir: Path,
                                                         tmp_path: Path) -> None:
    """Issue 20.7 on Ray: bad manifest records, paths and symlinks leaving the root and a
    multi-image WebDataset sample are rows, judged on the workers as locally."""
    from tests._corpus import hostile

    h = hostile(tmp_path / "c", [png(i) for i in range(3)])
    sources = [h["scan"], h["csv"], h["jsonl"], h["shard"]]
    options = {"model": str(tiny_clip_dir), "device": "cpu", "dtype": "float32"}
    summary = scan_corpus(sources, tmp_path / "ray", engine="ray", batch_size=4,
                          show_progress=False, **options)
    local = scan_corpus(sources, tmp_path / "local", batch_size=4, show_progress=False,
                        **options)
    assert (summary.rows, summary.errors) == (local.rows, local.errors) == (28, 17)
    ray_table, local_table = _table(tmp_path / "ray"), _table(tmp_path / "local")
    exact = ["id", "path", "image_sha256", "flagged", "category", "error"]
    assert ray_table.select(exact).equals(local_table.select(exact))


def test_ray_serve_answers_moderations_through_the_openai_sdk(ray_cluster: None,
                                                              tiny_clip_dir: Path) -> None:
    pytest.importorskip("fastapi")
    pytest.importorskip("safeclip_guardrail.serve")  # the service (issue 12)
    import base64
    import socket

    import httpx
    import openai
    from ray import serve

    from safeclip_guardrail import GuardConfig
    from safeclip_guardrail.scale.serve import guard_application

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = GuardConfig(model=str(tiny_clip_dir), device="cpu", dtype="float32")
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(guard_application(config, replicas=1, num_cpus=0.5, api_keys=["key"]),
                  name="safeclip", route_prefix="/")
        images = [png(20), png(21)]
        guard = SafeCLIPGuard.from_config(config)
        expected = guard.check_batch(images)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="key",
                               max_retries=0)
        parts: list[Any] = [{"type": "text", "text": "what is this?"}]
        for data in images:
            url = "data:image/png;base64," + base64.b64encode(data).decode()
            parts.append({"type": "image_url", "image_url": {"url": url}})
        result = client.moderations.create(model="safeclip", input=parts).results[0]
        # what the in-process service logic says for the same verdicts
        from safeclip_guardrail.serve.categories import CategoryMap

        want = CategoryMap(guard.bank).scores(expected)
        categories = result.categories.model_dump(by_alias=True)
        scores = result.category_scores.model_dump(by_alias=True)
        applied = result.category_applied_input_types.model_dump(by_alias=True)
        assert result.flagged == want.flagged
        assert {k for k, v in categories.items() if v} == \
            {k for k, v in want.categories.items() if v}
        for key, score in want.category_scores.items():
            assert scores[key] == pytest.approx(score, abs=1e-5), key
            assert applied[key] == want.category_applied_input_types[key], key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="wrong",
                          max_retries=0).moderations.create(model="safeclip", input="hi")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz").json()
        # a local directory is named by its last component only: no server path is shown
        assert ready["ready"] and ready["model"] == f"safeclip-{tiny_clip_dir.name}"
    finally:
        serve.shutdown()
