"""What a person types: the README's main command exactly as written, and the jobs with relative paths, each a
`fsnet` subprocess in a fresh working directory (Ray Train and Ray Data workers run in working directories of their
own, so a relative path that reached them meant another folder); two commands at once on one machine."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

FSNET = Path(sys.executable).with_name("fsnet")
README = Path(__file__).resolve().parents[2] / "README.md"
TINY_TRAIN = ["--set", "train.stage1.epochs=1", "--set", "train.stage2.epochs=1", "--set", "train.stage3.epochs=1"]


def readme_main_command() -> list[str]:
    """The fenced block after <!-- main-command -->, without its install part: the `.venv/bin/fsnet ...` command
    it ends with, run with this environment's fsnet."""
    block = re.search(r"<!-- main-command -->\s*```\w*\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md has no fenced block after <!-- main-command -->"
    last = block.group(1).strip().split("&&")[-1].strip()
    words = shlex.split(last)
    assert words[0] == ".venv/bin/fsnet", f"the main command should end with .venv/bin/fsnet ...: {last!r}"
    return [str(FSNET), *words[1:]]


def user_env() -> dict[str, str]:
    """This machine's environment as a person's shell has it: no Ray address of the test session, a wide
    terminal so that rich does not wrap the paths we look for."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["COLUMNS"] = "400"
    return env


def fsnet(cwd: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(FSNET), *args], cwd=cwd, env=user_env(), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"fsnet {' '.join(args)} -> {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow
def test_readme_main_command_as_written(tmp_path):
    command = readme_main_command()
    first = subprocess.run(command, cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, (
        f"{' '.join(command)} -> {first.returncode}\n{first.stdout[-3000:]}\n{first.stderr[-3000:]}"
    )
    report = tmp_path / "fsnet-demo" / "report" / "report.html"
    results = tmp_path / "fsnet-demo" / "eval" / "results.json"
    assert report.is_file() and results.is_file()
    assert str(report) in first.stdout  # it says where the report is, as an absolute path
    # a second run finds every step done: the model and the results stay as they were
    model = tmp_path / "fsnet-demo" / "run" / "model.pt"
    stamps = (model.stat().st_mtime_ns, results.stat().st_mtime_ns)
    again = subprocess.run(command, cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (model.stat().st_mtime_ns, results.stat().st_mtime_ns) == stamps and report.is_file()


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
