"""What a person types: the jobs with relative paths, each a `fsnet` subprocess in a fresh working directory (Ray
Train and Ray Data workers run in working directories of their own, so a relative path that reached them meant
another folder); two commands at once on one machine. The README's main command: test_demo.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.jobs.subprocess_jobs import user_env

FSNET = Path(sys.executable).with_name("fsnet")
# One Ray Train stage: its workers are where a relative path went wrong; stages 2-3 write where stage 1 does
# (test_train.py trains them), and each would add a worker-group start (~20 s here).
TINY_TRAIN = ["--set", "train.stage1.epochs=1", "--set", "train.stage2.epochs=0", "--set", "train.stage3.epochs=0"]


def fsnet(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(FSNET), *args], cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"fsnet {' '.join(args)} -> {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow
def test_jobs_with_relative_paths_and_two_at_once(tmp_path):
    fsnet(tmp_path, "synth", "--n", "200", "--size", "64", "--seed", "1", "--out", "src")
    fsnet(tmp_path, "pack", "--config", "tiny", "--source", "src", "--out", "cat")

    # Two fsnet commands at once, each with the local Ray it starts: a training (Ray Train looks for "the" Ray of
    # this machine) and a pack (Ray Data actors) of the same source to another catalog.
    env = user_env()
    started = time.monotonic()
    training = subprocess.Popen(
        [str(FSNET), "train", "--config", "tiny", "--catalog", "cat", "--out", "run", *TINY_TRAIN],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    packing = subprocess.Popen(
        [str(FSNET), "pack", "--config", "tiny", "--source", "src", "--out", "cat2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    outputs = {}
    for name, proc in (("pack", packing), ("train", training)):
        out, err = proc.communicate(timeout=1200)
        outputs[name] = (proc.returncode, out, err)
    for name, (code, out, err) in outputs.items():
        assert code == 0, f"{name} -> {code}\n{out[-2000:]}\n{err[-3000:]}"
        assert "multiple active Ray instances" not in out + err, name
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "cat2" / "catalog.json").is_file()
    print(f"train + pack at once: {time.monotonic() - started:.0f} s")

    fsnet(tmp_path, "index", "--config", "tiny", "--model", "run/model.pt", "--catalog", "cat", "--out", "idx")
    assert (tmp_path / "idx" / "CURRENT").is_file()
    fsnet(tmp_path, "evaluate", "--config", "tiny", "--index", "idx", "--catalog", "cat", "--out", "ev")
    assert (tmp_path / "ev" / "results.json").is_file()
    live = (tmp_path / "idx" / "CURRENT").read_text().strip()  # "v1"
    some_id = pq.read_table(tmp_path / "idx" / live / "ids.parquet")["id"][0].as_py()
    found = fsnet(tmp_path, "search", "--config", "tiny", "--index", "idx", "--id", some_id, "-k", "3")
    assert some_id in found.stdout
