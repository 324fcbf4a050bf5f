"""bench/gpu_check.py --dry-run, as CI runs it: the GPU check's code paths on the CPU at tiny sizes, so the one call
on a GPU machine is known to run. It runs as the GPU machine runs it: a subprocess with a Ray of its own, and the
packages the device bundle lacks (s3fs and its AWS stack, the Ray dashboard's extras) unimportable in every process,
Ray's included (a sitecustomize on PYTHONPATH). Every part succeeds and its figures are positive numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUNDLE_LACKS = [  # neither the GPU image nor ../shared/device/make-bundle.sh's bundle has these (modules or prefixes)
    "s3fs",
    "botocore",
    "boto3",
    "aiobotocore",
    "aiohttp_cors",
    "opencensus",
    "opentelemetry",
    "colorful",
    "smart_open",
    "virtualenv",
    "py_spy",
    "google.api_core",
    "google.auth",
    "jsonpointer",
    "rfc3339_validator",
]
BLOCKER = """import importlib.abc, os, sys

BLOCKED = set(os.environ["FSNET_TEST_BLOCKED"].split(","))


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r} (not in the GPU bundle)", name=name)


sys.meta_path.insert(0, Blocker())
"""


def positive(entry: dict, *keys: str) -> None:
    for key in keys:
        value = entry[key]
        values = value if isinstance(value, list) else [value]
        assert values and all(isinstance(v, (int, float)) and v > 0 for v in values), f"{key}: {value!r}"


@pytest.mark.slow
def test_dry_run_measures_every_part_without_the_bundles_missing_packages(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=f"{site}{os.pathsep}{ROOT}", FSNET_TEST_BLOCKED=",".join(BUNDLE_LACKS), COLUMNS="200")
    out = tmp_path / "results" / "gpu_check.json"
    proc = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(out), "--work", str(tmp_path / "work")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "figures written to" in proc.stdout and "fsnet GPU check" in proc.stdout  # progress, then the table
    r = json.loads(out.read_text())
    assert r["dry_run"] is True and r["machine"]["gpus"] == 0 and r["machine"]["cpus"] >= 1
    for part in ("setup", "extraction", "training", "evaluation"):
        assert r[part]["ok"] is True and r[part]["error"] is None, r[part].get("traceback")
        positive(r[part], "seconds")

    setup = r["setup"]
    positive(setup, "images", "shards", "jpeg_bytes_mean", "synth_s", "pack_s")
    assert setup["images"] == 64 and setup["model"]["weights"] == "none" and setup["model"]["backbone"] == "tiny"

    ex = r["extraction"]
    positive(ex, "end_to_end_images_per_s", "steady_images_per_s", "model_only_images_per_s")
    positive(ex, "ratio_end_to_end_to_model_only", "ratio_steady_to_model_only")
    positive(ex["decode_only"], "cpu_one_thread_images_per_s")
    assert ex["device"] == "cpu" and ex["gpu_decode"] is False
    by_split = {run["split"]: run for run in ex["runs"]}
    assert by_split["all"]["images"] == 64 and by_split["gallery"]["images"] == setup["splits"]["gallery"]
    for run in ex["runs"]:
        positive(run, "images_per_s", "extract_s", "actors")
        assert run["rejected"] == 0

    tr = r["training"]
    positive(tr, "ray_train_images_per_s", "plain_loader_images_per_s", "plain_resident_images_per_s")
    positive(tr, "steady_ray_train_images_per_s", "steady_plain_images_per_s", "ray_train_stage_s", "images_per_epoch")
    assert tr["ray_train_overhead"] == pytest.approx(
        1 - tr["steady_ray_train_images_per_s"] / tr["steady_plain_images_per_s"], abs=1e-3
    )

    ev = r["evaluation"]
    positive(ev, "evaluator_s", "faiss_s", "speedup_vs_faiss", "manipulations")
    assert ev["device"] == "cpu" and ev["identical_top_k"] is True

    assert set(r["goals"]) == {"extraction_images_per_s", "extraction_ratio_to_model_only", "ray_train_overhead"}
    positive(r, "total_seconds", "ray_start_s")
