"""fsnet submit against a real Ray head (`ray start --head` on 127.0.0.1, 2 CPUs, its own ports and temp dir),
writing to the moto S3 endpoint: the whole pipeline as one job, reindex twice, a failing job."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from ray.job_submission import JobSubmissionClient
from typer.testing import CliRunner

from fsnet.config import load_config
from fsnet.storage import Storage
from jobs.cli import app
from jobs.ray_runtime import local_runtime_env
from tests.conftest import BUCKET, S3_SECRET, s3_sets

pytestmark = [pytest.mark.slow, pytest.mark.s3]


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _processes_under(temp: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if temp in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def ray_head():
    """A Ray head of its own: other ports than the session's in-process Ray, its own temp dir (so stopping it
    touches nothing else), the virtual environment's bin first on PATH (job drivers run `python -m jobs...`)."""
    temp = tempfile.mkdtemp(prefix="rh", dir="/tmp")  # short: Ray's unix sockets live under it
    gcs, dashboard, client, agent, metrics, runtime_env = free_ports(6)
    # Ray 2.60 turns token authentication on for a new head; this one listens on loopback only, for a test process
    # whose Ray client has read its auth mode at import, so it runs without (clusters: see README, RAY_AUTH_MODE).
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_AUTH_MODE="disabled",
        **local_runtime_env()["env_vars"],  # Ray Train's controller polls as in a local Ray of ours: seconds a stage
    )
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--head",
            "--num-cpus=2",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}",
            f"--ray-client-server-port={client}",
            f"--dashboard-agent-listen-port={agent}",
            f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={runtime_env}",
            f"--temp-dir={temp}",
            "--disable-usage-stats",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=180,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.time() + 60
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            break
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(1)
    yield address
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _processes_under(temp):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(3)
    assert not _processes_under(temp), "the test's Ray head did not stop"


def submit(address, *args):
    return CliRunner().invoke(app, ["submit", *args[:1], "--address", address, *args[1:]])


def test_pipeline_then_reindex_twice_then_a_failure(ray_head, s3_endpoint):
    sets = [
        *s3_sets(s3_endpoint),
        "synthetic.n=200",
        "train.stage1.epochs=1",
        "train.stage2.epochs=0",  # one Ray Train stage inside the job is the submit path's part; test_train.py
        "train.stage3.epochs=0",  # trains the others (each a worker-group start, ~20 s)
        "report.examples=1",
    ]
    setargs = [x for s in sets for x in ("--set", s)]
    out = f"s3://{BUCKET}/submitted"
    storage = Storage(load_config([], s3_sets(s3_endpoint)).storage)

    result = submit(ray_head, "pipeline", "--config", "tiny", *setargs, "--wait", "--", "--out", out, "--synthetic")
    assert result.exit_code == 0, result.output
    assert "SUCCEEDED" in result.output and S3_SECRET not in result.output
    for name in ("catalog/catalog.json", "run/model.pt", "index/CURRENT", "eval/results.json", "report/report.html"):
        assert storage.exists(f"{out}/{name}"), name
    jobs = JobSubmissionClient(ray_head)
    submitted = jobs.list_jobs()
    assert all(S3_SECRET not in (j.entrypoint or "") for j in submitted)  # credentials went as environment variables
    assert storage.read_text(f"{out}/index/CURRENT").strip() == "v1"

    # another model means a full re-index (v2); the next re-index has nothing to do
    first = submit(
        ray_head,
        "reindex",
        *setargs,
        "--config",
        "tiny",
        "--wait",
        "--",
        "--catalog",
        f"{out}/catalog",
        "--index",
        f"{out}/index",
        "--model",
        f"{out}/run/stage2.pt",
    )
    assert first.exit_code == 0, first.output
    assert storage.read_text(f"{out}/index/CURRENT").strip() == "v2"
    second = submit(
        ray_head,
        "reindex",
        *setargs,
        "--config",
        "tiny",
        "--follow",
        "--",
        "--catalog",
        f"{out}/catalog",
        "--index",
        f"{out}/index",
    )
    assert second.exit_code == 0, second.output
    assert "nothing to do" in second.output and storage.read_text(f"{out}/index/CURRENT").strip() == "v2"
    job_id = second.output.split("submitted reindex: ")[1].split()[0]
    status = CliRunner().invoke(app, ["jobs", "status", job_id, "--address", ray_head])
    assert status.exit_code == 0 and "SUCCEEDED" in status.output

    failed = submit(
        ray_head,
        "index",
        *setargs,
        "--config",
        "tiny",
        "--wait",
        "--",
        "--model",
        f"s3://{BUCKET}/no/model.pt",
        "--catalog",
        f"{out}/catalog",
        "--out",
        f"{out}/index-b",
    )
    assert failed.exit_code != 0
    said = failed.output + str(failed.exception)
    assert "FAILED" in said and "no/model.pt" in said  # the job's last log lines say why


def test_unreachable_cluster_is_one_clear_error():
    (port,) = free_ports(1)
    result = CliRunner().invoke(app, ["submit", "index", "--address", f"http://127.0.0.1:{port}", "--", "--model", "m"])
    assert result.exit_code != 0
    assert f"no Ray Jobs API at http://127.0.0.1:{port}" in str(result.exception)
