"""What the GPU check's parts share (bench/gpu_check.py runs them): progress lines, the run's settings and folders,
each part run in a thread against its deadline with its figures written to the JSON as soon as it ends, and a local
Ray started through jobs/ray_runtime.py as the jobs start theirs."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import ray
import torch

from fsnet.config import Config, load_config
from fsnet.storage import Storage, join
from jobs.ray_runtime import init_ray

RESERVE_S = {"setup": 240.0, "extraction": 120.0, "training": 45.0, "evaluation": 0.0}  # for the parts after it
START = time.perf_counter()


def say(message: str) -> None:
    """A progress line with the wall clock and the seconds since start, flushed at once."""
    print(f"[{dt.datetime.now():%H:%M:%S} +{time.perf_counter() - START:6.1f} s] {message}", flush=True)


def plain(value: Any) -> Any:
    """numpy scalars and arrays as JSON numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def rate(images: float, seconds: float) -> float | None:
    return round(images / seconds, 1) if seconds > 0 else None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def guarded(what: str, run: Callable[[], Any]) -> Any:
    """An optional measurement inside a part: its result, or {"error": ...} where it fails, so that a diagnostic
    never costs the part's main figures."""
    try:
        return run()
    except Exception as err:  # noqa: BLE001 - recorded beside the figures
        say(f"{what}: FAILED: {type(err).__name__}: {str(err)[:300]}")
        return {"error": f"{type(err).__name__}: {str(err)[:1500]}", "traceback": traceback.format_exc()[-3000:]}


def start_ray(cfg: Config) -> float:
    """A local Ray of this machine's CPUs and GPUs, started as the jobs start theirs (jobs/ray_runtime.py); its
    seconds."""
    os.environ.pop("RAY_ADDRESS", None)  # a benchmark measures a Ray of its own, never a cluster it finds
    # no OOM killer: a VM whose memory grows as it is used (the GPU machines) reports little at first
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    start = time.perf_counter()
    # the dashboard as Ray decides: full where its packages are installed, none where not (the GPU bundle)
    init_ray(cfg.ray.model_copy(update={"address": None, "num_cpus": None, "dashboard": None}))
    return time.perf_counter() - start


def stop_ray(wait_s: float = 30.0) -> None:
    """ray.shutdown() in a helper thread, waited for at most ``wait_s``: after a hang it may itself hang."""
    thread = threading.Thread(target=ray.shutdown, name="gpu-check-ray-shutdown", daemon=True)
    thread.start()
    thread.join(wait_s)


@dataclass
class Check:
    """The run's settings, where its files live, and the JSON it writes."""

    args: argparse.Namespace
    work: str
    out: Path
    cpus: int
    gpus: int
    storage: Storage = field(init=False)
    results: dict[str, Any] = field(default_factory=dict)
    hung: bool = False  # a part outlived its deadline; its thread may still hold Ray or the GPU

    def __post_init__(self) -> None:
        self.storage = Storage(self.config().storage)

    @property
    def device(self) -> torch.device:
        return torch.device("cuda" if self.gpus else "cpu")

    @property
    def catalog_url(self) -> str:
        return join(self.work, "catalog")

    @property
    def model_url(self) -> str:
        return join(self.work, "model.pt")

    def config(self, sets: list[str] = ()) -> Config:
        a = self.args
        presets = ["tiny"] if a.dry_run else ["synthetic"]
        return load_config(
            presets,
            [
                f"synthetic.size={a.size}",
                f"catalog.shard_rows={a.shard_rows}",
                f"model.backbone={a.backbone}",
                "model.weights=none",  # nothing to download on the GPU machine; throughput does not depend on them
                f"model.image_size={a.size}",
                f"index.batch_size={a.batch}",
                "train.workers=1",
                f"train.use_gpu={'true' if self.gpus else 'false'}",
                "train.cpus_per_worker=1",
                f"train.batch_size={a.train_batch}",
                f"train.stage2.epochs={a.train_epochs}",
                *sets,
            ],
        )

    def over_budget(self) -> bool:
        return time.perf_counter() - START > self.args.budget_s

    def part(self, name: str, run: Callable[["Check"], dict[str, Any]], needs: tuple[str, ...] = ()) -> None:
        """Run one part in a thread until it ends or its deadline passes (--deadline-s less what the later parts
        need): its figures, or its error and traceback, and its seconds, written to the JSON at once."""
        missing = [n for n in needs if not self.results.get(n, {}).get("ok")]
        if missing:
            self.results[name] = {"ok": False, "error": f"skipped: {', '.join(missing)} did not succeed", "seconds": 0}
            say(f"{name}: skipped ({', '.join(missing)} did not succeed)")
            self.write()
            return
        timeout = max(30.0, self.args.deadline_s - RESERVE_S[name] - (time.perf_counter() - START))
        say(f"{name}: start (deadline in {timeout:.0f} s)")
        start = time.perf_counter()
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["figures"] = run(self)
            except Exception as err:  # noqa: BLE001 - a GPU call is precious: record the failure, run the other parts
                outcome["error"] = f"{type(err).__name__}: {str(err)[:1500]}"
                outcome["traceback"] = traceback.format_exc()[-6000:]

        thread = threading.Thread(target=target, name=f"gpu-check-{name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            self.hung = True
            entry = {"ok": False, "error": f"timed out after {timeout:.0f} s (--deadline-s {self.args.deadline_s:g})"}
            say(f"{name}: TIMED OUT after {timeout:.0f} s; shutting Ray down to wake it")
            stop_ray()
        elif "error" in outcome:
            entry = {"ok": False, "error": outcome["error"], "traceback": outcome["traceback"]}
            say(f"{name}: FAILED: {entry['error'][:300]}")
        else:  # a part may report its own failure beside the figures it did get (``ok``, ``error``)
            entry = {"ok": True, "error": None, **outcome["figures"]}
            if not entry["ok"]:
                say(f"{name}: FAILED: {str(entry['error'])[:300]}")
        if not entry["ok"] and torch.cuda.is_available():
            torch.cuda.empty_cache()
        entry["seconds"] = round(time.perf_counter() - start, 2)
        self.results[name] = entry
        say(f"{name}: done in {entry['seconds']:.1f} s")
        self.write()

    def write(self) -> None:
        self.results["total_seconds"] = round(time.perf_counter() - START, 2)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        partial = self.out.with_name(self.out.name + ".partial")
        partial.write_text(json.dumps(self.results, indent=1, default=plain) + "\n")
        partial.replace(self.out)
