"""The README's main command exactly as written (`fsnet demo`, relative paths), as a subprocess in a fresh working
directory: what a newcomer types first."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.jobs.subprocess_jobs import user_env

FSNET = Path(sys.executable).with_name("fsnet")
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_main_command() -> list[str]:
    """The fenced block after <!-- main-command -->, without its install part: the `.venv/bin/fsnet ...` command
    it ends with, run with this environment's fsnet."""
    block = re.search(r"<!-- main-command -->\s*```\w*\n(.*?)```", README.read_text(), re.S)
    assert block, "README.md has no fenced block after <!-- main-command -->"
    last = block.group(1).strip().split("&&")[-1].strip()
    words = shlex.split(last)
    assert words[0] == ".venv/bin/fsnet", f"the main command should end with .venv/bin/fsnet ...: {last!r}"
    return [str(FSNET), *words[1:]]


def top20(results: dict, method: str) -> float:
    run = next(r for r in results["runs"] if r["method"] == method)
    return run["average"]["top_k"][19]


@pytest.mark.slow
def test_readme_main_command_as_written(tmp_path):
    """In an 80-column terminal (piped), as a newcomer's first command: it finishes, says where its report is, every
    table whole, one line per epoch and none of Ray's own; and the demo makes its case: the trained model ranks
    clearly above the frozen-feature probe."""
    command = readme_main_command()
    env = user_env() | {"COLUMNS": "80"}
    first = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, (
        f"{' '.join(command)} -> {first.returncode}\n{first.stdout[-3000:]}\n{first.stderr[-3000:]}"
    )
    report = tmp_path / "fsnet-demo" / "report" / "report.html"
    results = tmp_path / "fsnet-demo" / "eval" / "results.json"
    assert report.is_file() and results.is_file()
    assert str(report) in first.stdout  # it says where the report is, as an absolute path

    shown = first.stdout + first.stderr
    assert "…" not in shown, "a table cell or header was cut at 80 columns"
    for ray_line in ("execution finished in", "core_worker.cc", "Reporting training result", "RayTrainWorker"):
        assert ray_line not in shown
    epochs = re.findall(r"^stage (\d) epoch (\d+)/\d+:", first.stdout, re.M)
    assert epochs and len(epochs) == len(set(epochs)), "each epoch once"
    figures = json.loads(results.read_text())
    assert top20(figures, "full+logp") >= top20(figures, "probe") + 0.05
    assert top20(figures, "full") >= top20(figures, "probe")
    assert "against the probe's" in " ".join(first.stdout.split())  # the headline the report opens with
    # intervals: every curve, the headline's paired difference, the report's cells
    band = next(r for r in figures["runs"] if r["method"] == "full+logp")["average"]["interval"]["top_k"]
    assert band["low"][19] <= top20(figures, "full+logp") <= band["high"][19]
    headline = figures["headline"]
    assert headline["method"] == "full+logp" and headline["low"] <= headline["difference"] <= headline["high"]
    assert " ± " in report.read_text() and (results.parent / "outcomes.parquet").is_file()
    # a second run finds every step done: the model and the results stay as they were
    model = tmp_path / "fsnet-demo" / "run" / "model.pt"
    stamps = (model.stat().st_mtime_ns, results.stat().st_mtime_ns)
    again = subprocess.run(command, cwd=tmp_path, env=user_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (model.stat().st_mtime_ns, results.stat().st_mtime_ns) == stamps and report.is_file()
