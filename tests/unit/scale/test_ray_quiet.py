"""Ray scans say what we say: no INFO chatter, no "will hang" warning that is not true, an
actor pool that fits the CPUs there are, and a failure as one line (Ray's traces stay in
its log files).

The in-process tests use a local cluster (started here unless one is running: the session
fixture of test_scale_ray.py); one test runs the CLI in a fresh process, so that Ray's own
start-up, the way a user meets it, is covered too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeclip_guardrail.errors import ConfigurationError, SafeCLIPError
from safeclip_guardrail.scale import scan_corpus
from safeclip_guardrail.scale._ray import actor_cpus
from tests._corpus import png

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"]),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # Ray's own

NOISE = (" INFO ", "will hang", "core_worker.cc", "Traceback", "logging_progress",
         "Started a local Ray instance", "RayDeprecationWarning")


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    yield
    if started:
        ray.shutdown()


def _images(root: Path, n: int) -> Path:
    root.mkdir()
    for i in range(n):
        (root / f"{i:02d}.png").write_bytes(png(i))
    return root


def test_actor_pool_fits_the_cpus() -> None:
    assert actor_cpus(actors=1, cpus_per_actor=None, cluster=2, local=True) == 2
    assert actor_cpus(actors=4, cpus_per_actor=None, cluster=2, local=True) == 0.5
    assert actor_cpus(actors=2, cpus_per_actor=1, cluster=2, local=True) == 1
    with pytest.raises(ConfigurationError, match="need 4 CPUs; this machine's Ray cluster has 2"):
        actor_cpus(actors=4, cpus_per_actor=1, cluster=2, local=True)
    # a cluster you join may grow (autoscaling): Ray waits for the CPUs there
    assert actor_cpus(actors=4, cpus_per_actor=1, cluster=2, local=False) == 1


@pytest.mark.slow
def test_a_tiny_scan_prints_only_its_summary(cluster: None, tiny_clip_dir: Path, tmp_path: Path,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    root = _images(tmp_path / "img", 6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = scan_corpus(root, tmp_path / "out", engine="ray", actors=3,
                              model=str(tiny_clip_dir), device="cpu", dtype="float32",
                              batch_size=2, show_progress=False)
    assert summary.rows == 6
    assert not [w for w in caught if "ray" in w.filename
                and not issubclass(w.category, DeprecationWarning)]
    out, err = capfd.readouterr()
    for noise in NOISE:
        assert noise not in out + err, (noise, out + err)


@pytest.mark.slow
def test_a_failing_worker_is_one_error_without_ray_traces(cluster: None, tmp_path: Path,
                                                          capfd: pytest.CaptureFixture[str]
                                                          ) -> None:
    root = _images(tmp_path / "img", 2)
    with pytest.raises(SafeCLIPError, match="could not load CLIP model") as err:
        scan_corpus(root, tmp_path / "out", engine="ray", model=str(tmp_path / "no-model"),
                    device="cpu", show_progress=False)
    assert len(str(err.value).splitlines()) == 1
    out, printed = capfd.readouterr()
    assert "Traceback" not in out + printed and "ERROR" not in out + printed


@pytest.mark.slow
def test_the_cli_on_a_fresh_local_cluster_is_quiet(tiny_clip_dir: Path, tmp_path: Path) -> None:
    root = _images(tmp_path / "img", 30)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
           "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(
        [sys.executable, "-m", "safeclip_guardrail.cli", "scan-corpus", str(root), "--out",
         str(tmp_path / "out"), "--engine", "ray", "--model", str(tiny_clip_dir), "--device",
         "cpu", "--dtype", "float32"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("30 images in ") and len(done.stdout.splitlines()) == 1
    assert done.stderr.strip() == "", done.stderr
