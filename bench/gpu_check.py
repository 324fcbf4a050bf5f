"""One call on a GPU machine: fsnet's extraction, training and evaluation figures on whatever GPU
is present, in one JSON, each part timed and guarded so that one failing part records its error and the others run.

    python bench/gpu_check.py --out $OUT/gpu_check.json      # sized for ~5 minutes on one H200; --deadline-s bounds it
    python bench/gpu_check.py --dry-run                       # no CUDA: the same code paths at tiny sizes
On the GPU machine, with the bundle that ../shared/device/make-bundle.sh builds (Python 3.12, no s3fs: local files;
carry .devbundle):
    bash .devbundle/install.sh && export PYTHONPATH=/opt/bundle-site:$PWD && \\
        python3 bench/gpu_check.py --out $OUT/gpu_check.json
Most of a dry run's time is Ray's fixed costs (a Ray Train stage's start-up, an index run's actor spawn), which do
not shrink with the sizes.

Parts, in this order (each one's figures land in the JSON as soon as it ends):
  setup       a synthetic catalog: --distinct garment photos rendered by ``fsnet synth`` at --size px, repeated to
              --images rows (ids unique; rendering all of them would cost more than what is measured), packed by
              ``fsnet pack`` into local Parquet JPEG shards; an untrained model (``model.weights: none``) saved
  extraction  ``fsnet index`` (jobs.index: Ray Data read -> EmbedImages actors -> write_parquet -> faiss) of the
              gallery split and of every image, per --actors-per-gpu setting, after one warm-up run. End to end is
              images / extract seconds of a run; the marginal rate between the two runs is the steady state (the
              fixed start-up, actor spawn, model load and CUDA init, cancels out). Against the same model's forward
              alone (fp16 autocast, channels_last, the same batch, images already on the device); and the decode
              alone (EmbedImages' nvJPEG batch + resize; libjpeg-turbo on one CPU thread)
  training    one Ray Train stage 2 (jobs.train.run_stage: TorchTrainer, 1 worker, Ray Data decode tasks) against a
              plain PyTorch loop of the same steps (fsnet.training.local_step) from the same weights on the same
              device, fed by a DataLoader running the same decode (fsnet.training.decode_for_training) in one process
              per CPU Ray Data had; and the steps alone on batches already on the device (the step ceiling)
  evaluation  the factorized evaluator (eval.topk.factorized_topk; on CUDA where torch sees it) against faiss
              IndexFlatL2 brute force on the same data (eval_bench's protocol: Shopping100k's 12 attributes, labels in
              product families, D = r = 256), with the Top-K compared; on a GPU machine also the factorized evaluator
              on the CPU

Ray: this script starts its own local Ray (all CPUs and GPUs of the machine); fsnet/ never does. Progress lines carry
the wall clock and the seconds since start. Sizes are flags. Time: --budget-s skips the optional runs (a second actor
setting, the CPU evaluator, the steps-alone loop) once the script has run that long; --deadline-s bounds the whole
run: a part still running at its share of it (the deadline less what the later parts need) is recorded as timed out,
Ray is shut down to wake it, and the next part starts, so that a hang costs one part, not the call.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from unittest import mock

import numpy as np
import pandas as pd
import ray
import torch
import torchvision
from rich.console import Console
from rich.table import Table

import eval.topk as topk
from eval.linear_global import LinearGlobal
from eval.protocol import build_manipulations
from fsnet.catalog.reader import Catalog
from fsnet.config import Config, load_config
from fsnet.decode import decode_batch, decode_or_reject, resize_batch
from fsnet.losses import StageLoss
from fsnet.model import build_model, load_model, save_model
from fsnet.model.batch_norm import training_mode
from fsnet.model.checkpoint import model_from_bytes
from fsnet.storage import Storage, join
from fsnet.training import decode_for_training, local_step, make_optimizer, trainable
from jobs.index import index
from jobs.pack import pack
from jobs.ray_runtime import filter_forwarded_logs, local_runtime_env
from jobs.synth import synth
from jobs.train import run_stage, training_plan
from jobs.train_loop import METRICS_FILE
from jobs.training_split import training_ids
from jobs.worker_setup import quiet_logs

try:  # run as a script: bench/ is on sys.path (the GPU machine runs it so)
    from record import provenance
except ImportError:  # imported as bench.gpu_check
    from bench.record import provenance

ROWS_TABLE = "rows.csv"  # the synthetic label table repeated to --images rows, beside synth's labels.csv
GOAL_EXTRACTION = 12_000  # images/s end to end per H100/H200, the goal set for the paper's AlexNet at 224 px
GOAL_EXTRACTION_RATIO = 0.8  # of the model alone
GOAL_TRAIN_OVERHEAD = 0.10  # Ray Train against a plain loop
NUM_VALUES = [16, 17, 19, 14, 10, 15, 2, 11, 16, 7, 9, 15]  # Shopping100k's attributes, as bench/eval_bench.py
FULL = dict(  # on a GPU: sized so that the whole script stays near 5 minutes on one H200 with 16 cores
    images=30_000,
    distinct=2048,
    size=224,
    backbone="alexnet",  # the paper's and default.yaml's; the goals are stated for it
    batch=256,  # default.yaml's index.batch_size
    shard_rows=512,  # configs/synthetic.yaml's: ~6.5 MB shards at 224 px, ~60 of them to read in parallel
    train_batch=64,  # default.yaml's train.batch_size
    train_epochs=2,  # epoch 0 starts the pipeline; the last is the steady state
    model_seconds=8.0,
    warmup_runs=1,  # an index run before the measured ones takes the first-use costs (worker imports, page cache)
    queries=2000,
    gallery=18_000,
    families=30,  # eval_bench's dense setting: ~62 manipulations per query
    redraw=0.05,
    k=50,
    embed_dim=256,
    global_dim=256,
)
DRY = dict(  # no CUDA: the same code paths, the sizes as small as they go
    images=64,
    distinct=64,
    size=64,
    backbone="tiny",
    batch=32,
    shard_rows=32,
    train_batch=16,
    train_epochs=1,
    model_seconds=1.0,
    warmup_runs=0,
    queries=40,
    gallery=300,
    families=10,
    redraw=0.1,
    k=10,
    embed_dim=16,
    global_dim=16,
)
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


def guarded(what: str, run: Callable[[], Any]) -> Any:
    """An optional measurement inside a part: its result, or {"error": ...} where it fails, so that a diagnostic
    never costs the part's main figures."""
    try:
        return run()
    except Exception as err:  # noqa: BLE001 - recorded beside the figures
        say(f"{what}: FAILED: {type(err).__name__}: {str(err)[:300]}")
        return {"error": f"{type(err).__name__}: {str(err)[:1500]}", "traceback": traceback.format_exc()[-3000:]}


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


# ----- setup ---------------------------------------------------------------------------------------------------------
def start_ray(cpus: int, gpus: int) -> float:
    """A local Ray of this machine's CPUs and GPUs, every worker pinned to it as the jobs' own (jobs/ray_runtime.py).
    The dashboard as Ray decides: full where its packages are installed, minimal where not (the GPU bundle)."""
    os.environ.pop("RAY_ADDRESS", None)  # a benchmark measures a Ray of its own, never a cluster it finds
    # no OOM killer: a VM whose memory grows as it is used (the GPU machines) reports little at first
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    quiet_logs()
    start = time.perf_counter()
    ray.init(
        num_cpus=cpus,
        num_gpus=gpus,
        logging_level=logging.ERROR,
        runtime_env=local_runtime_env(),
    )
    filter_forwarded_logs()
    return time.perf_counter() - start


def stop_ray(wait_s: float = 30.0) -> None:
    """ray.shutdown() in a helper thread, waited for at most ``wait_s``: after a hang it may itself hang."""
    thread = threading.Thread(target=ray.shutdown, name="gpu-check-ray-shutdown", daemon=True)
    thread.start()
    thread.join(wait_s)


def setup(check: Check) -> dict[str, Any]:
    a = check.args
    if not ray.is_initialized():  # main() started it; after a timed-out part's shutdown, again
        check.results["ray_start_s"] = round(start_ray(check.cpus, check.gpus), 2)
    say(f"setup: rendering {a.distinct:,} images at {a.size} px")
    source = join(check.work, "synth")
    start = time.perf_counter()
    synth(check.config([f"synthetic.n={a.distinct}"]), source, show_progress=False)
    synth_s = time.perf_counter() - start
    labels = pd.read_csv(join(source, "labels.csv"), dtype=str, keep_default_na=False)
    rows = labels.iloc[np.arange(a.images) % len(labels)].reset_index(drop=True)
    rows.insert(0, "id", [f"{i:07d}" for i in range(len(rows))])
    rows.to_csv(join(source, ROWS_TABLE), index=False)
    say(f"setup: packing {a.images:,} rows ({a.distinct:,} distinct images)")
    packed = pack(
        check.config([f"source.path={source}", f"source.table={ROWS_TABLE}", "source.id_column=id"]),
        check.catalog_url,
        show_progress=False,
    )
    catalog = Catalog.open(check.catalog_url, check.storage)
    cfg = check.config()
    torch.manual_seed(0)
    save_model(build_model(cfg.model, catalog.schema), check.model_url, check.storage)
    shard_bytes = sum(os.path.getsize(join(check.catalog_url, s.path)) for s in catalog.manifest.shards)
    return {
        "images": catalog.manifest.rows,
        "distinct_images": a.distinct,
        "image_size": a.size,
        "shards": len(catalog.manifest.shards),
        "shard_bytes": shard_bytes,
        "jpeg_bytes_mean": round(shard_bytes / max(1, a.images)),
        "splits": {s: int(len(catalog.split_ids(s))) for s in ("query", "gallery", "train")},
        "synth_s": round(synth_s, 2),
        "pack_s": round(packed.seconds, 2),
        "model": {
            "backbone": cfg.model.backbone,
            "weights": cfg.model.weights,
            "variant": cfg.model.variant,
            "image_size": cfg.model.image_size,
            "attributes": catalog.schema.names,
            "parameters": sum(p.numel() for p in load_model(check.model_url, check.storage).parameters()),
        },
    }


# ----- extraction ----------------------------------------------------------------------------------------------------
def index_run(check: Check, actors: int | None, split: str, tag: str) -> dict[str, Any]:
    """One ``fsnet index`` of ``split`` into a fresh folder (removed after): its images/s and where time went."""
    out = join(check.work, f"index-{tag}")
    sets = [f"index.actors={actors}"] if actors else []
    start = time.perf_counter()
    manifest = index(check.config(sets), check.model_url, check.catalog_url, out, split=split).manifest
    job_s = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    t = manifest.timings
    busy = t.get("decode_busy", 0.0) + t.get("model_busy", 0.0)
    pool = actors or (check.gpus or max(1, check.cpus - 1))
    run = {
        "tag": tag,
        "split": split,
        "actors": pool,
        "images": manifest.indexed,
        "rejected": len(manifest.rejected),
        "extract_s": round(t["extract"], 3),
        "job_s": round(job_s, 3),
        "images_per_s": rate(manifest.indexed, t["extract"]),
        "decode_busy_s": round(t.get("decode_busy", 0.0), 3),
        "model_busy_s": round(t.get("model_busy", 0.0), 3),
        # what the actors would do if never waiting on Ray Data: images over their busy seconds, times the pool
        "actor_busy_images_per_s": rate(manifest.indexed * pool, busy),
    }
    say(
        f"extraction: {tag}: {run['images']:,} images in {run['extract_s']:.1f} s = {run['images_per_s']} images/s "
        f"(decode busy {run['decode_busy_s']:.1f} s, model busy {run['model_busy_s']:.1f} s)"
    )
    return run


def sample_images(check: Check, count: int) -> tuple[list[bytes], torch.Tensor]:
    """``count`` encoded gallery images and the same decoded and resized on the CPU (B, 3, S, S) uint8."""
    catalog = Catalog.open(check.catalog_url, check.storage)
    blobs = list(next(catalog.batches("gallery", ["image"], batch_size=count))["image"])
    while len(blobs) < count:  # a tiny catalog: repeat
        blobs += blobs[: count - len(blobs)]
    return blobs, decode_batch(blobs, check.args.size)


def model_only(check: Check, images: torch.Tensor) -> dict[str, Any]:
    """The model alone as EmbedImages runs it (embed + global representation; fp16 autocast and channels_last on a
    GPU), on batches of index.batch_size already on the device, for about --model-seconds."""
    device, cuda, batch = check.device, check.gpus > 0, check.args.batch
    model = load_model(check.model_url, check.storage).to(device)
    x = images.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    batches = [b for b in x.split(batch) if len(b) == batch] or [x]

    def forward(b: torch.Tensor) -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            model.global_representation(model.embed(b).reps)

    for b in batches[:3]:  # warm-up: kernels chosen, memory pooled
        forward(b)
    sync(device)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < check.args.model_seconds or done == 0:
        for b in batches:
            forward(b)
            done += len(b)
        sync(device)
    seconds = time.perf_counter() - start
    return {"images_per_s": rate(done, seconds), "images": done, "seconds": round(seconds, 3), "batch": batch}


def decode_only(check: Check, blobs: list[bytes]) -> dict[str, Any]:
    """EmbedImages' decode and resize alone: on the GPU (nvJPEG, the batch in one call) where there is one, and on
    one CPU thread (libjpeg-turbo, image by image, as a CPU actor does)."""
    size, out = check.args.size, {}
    batches = [blobs[i : i + check.args.batch] for i in range(0, len(blobs), check.args.batch)]

    def timed(device: torch.device, batched: bool) -> float | None:
        def decode(blobs: list[bytes]) -> torch.Tensor:  # (B, 3, S, S) uint8 on ``device``
            return resize_batch([i for i in decode_or_reject(blobs, device, batched)[0] if i is not None], size)

        decode(batches[0])  # warm-up: nvJPEG's handles and buffers
        sync(device)
        start = time.perf_counter()
        for b in batches:
            decode(b)
        sync(device)
        return rate(sum(map(len, batches)), time.perf_counter() - start)

    if check.gpus:
        out["gpu_batched_images_per_s"] = timed(check.device, True)
        # nvJPEG against libjpeg-turbo on the same images: IDCT rounding differs by a few levels at most
        on_gpu = decode_or_reject(batches[0], check.device, batched=True)[0]
        on_cpu = decode_or_reject(batches[0])[0]
        diff = [(g.cpu().int() - c.int()).abs() for g, c in zip(on_gpu, on_cpu) if g is not None and c is not None]
        if diff:
            out["gpu_vs_cpu_max_abs_diff"] = max(int(d.max()) for d in diff)
            out["gpu_vs_cpu_mean_abs_diff"] = round(float(torch.stack([d.float().mean() for d in diff]).mean()), 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out["cpu_one_thread_images_per_s"] = timed(torch.device("cpu"), False)
    finally:
        torch.set_num_threads(threads)
    out["images"] = sum(map(len, batches))
    return out


def extraction(check: Check) -> dict[str, Any]:
    a = check.args
    settings = [n * check.gpus for n in a.actors_per_gpu] if check.gpus else [None]
    # first-use costs (worker imports, the first actor spawn) land in the warm-up runs, not in the measured ones
    runs = [index_run(check, settings[0], "gallery", f"warmup-{i}") for i in range(a.warmup_runs)]
    per_setting = []
    for actors in settings:
        if per_setting and check.over_budget():
            per_setting.append({"actors": actors, "skipped": f"over --budget-s {a.budget_s:g}"})
            continue
        try:  # a setting that fails (two actors sharing a GPU, say) leaves the others' figures
            gallery = index_run(check, actors, "gallery", f"gallery-{actors or 'auto'}")
            every = index_run(check, actors, "all", f"all-{actors or 'auto'}")
        except Exception as err:  # noqa: BLE001 - recorded in the setting's entry
            say(f"extraction: {actors} actor(s) FAILED: {type(err).__name__}: {str(err)[:300]}")
            per_setting.append({"actors": actors, "error": f"{type(err).__name__}: {str(err)[:1500]}"})
            continue
        runs += [gallery, every]
        extra, extra_s = every["images"] - gallery["images"], every["extract_s"] - gallery["extract_s"]
        # None where the larger run was not slower (tiny sizes: start-up noise is larger than the work)
        marginal = rate(extra, extra_s) if extra > 0 and extra_s > 0 else None
        per_setting.append(
            {
                "actors": every["actors"],
                "end_to_end_images_per_s": every["images_per_s"],
                "marginal_images_per_s": marginal,
                # what a run costs whatever its size (actor spawn, model load, CUDA init, the last write)
                "fixed_s": round(every["extract_s"] - every["images"] / marginal, 2) if marginal else None,
                "actor_busy_images_per_s": every["actor_busy_images_per_s"],
            }
        )
    blobs, images = sample_images(check, max(4 * a.batch, 1024 if check.gpus else 2 * a.batch))
    alone = model_only(check, images)
    say(f"extraction: model alone {alone['images_per_s']} images/s (batch {alone['batch']})")
    decode = guarded("extraction: decode alone", lambda: decode_only(check, blobs))
    say(f"extraction: decode alone {decode}")
    if check.gpus:
        torch.cuda.empty_cache()  # the driver's cached blocks back to the GPU before Ray Train's worker starts
    measured = [s for s in per_setting if "skipped" not in s and "error" not in s]
    if not measured:
        raise RuntimeError(f"no actor setting could be measured: {per_setting}")
    best = max(measured, key=lambda s: s["marginal_images_per_s"] or s["end_to_end_images_per_s"] or 0)
    steady = best["marginal_images_per_s"] or best["end_to_end_images_per_s"]
    model_rate = alone["images_per_s"]
    return {
        "device": str(check.device),
        "gpu_decode": bool(check.gpus) and check.config().index.gpu_decode,
        "batch": a.batch,
        "runs": runs,
        "settings": per_setting,
        "model_only": alone,
        "decode_only": decode,
        "best_actors": best["actors"],
        "end_to_end_images_per_s": best["end_to_end_images_per_s"],
        "steady_images_per_s": steady,
        "steady_from": "marginal" if best["marginal_images_per_s"] else "end_to_end",
        "model_only_images_per_s": model_rate,
        "ratio_end_to_end_to_model_only": round(best["end_to_end_images_per_s"] / model_rate, 3),
        "ratio_steady_to_model_only": round(steady / model_rate, 3),
    }


# ----- training ------------------------------------------------------------------------------------------------------
class DecodedBatches(torch.utils.data.Dataset):
    """Batch i of one epoch's order of the training rows, decoded and augmented as Ray Data's decode tasks do it."""

    def __init__(self, rows: dict[str, np.ndarray], order: np.ndarray, cfg: Config, names: list[str]):
        self.rows, self.order, self.cfg, self.names = rows, order, cfg, names
        self.batch = cfg.train.batch_size

    def __len__(self) -> int:
        return len(self.order) // self.batch  # full batches only, as Ray Train's drop_last

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        take = self.order[i * self.batch : (i + 1) * self.batch]
        out = decode_for_training(
            {k: v[take] for k, v in self.rows.items()},
            size=self.cfg.model.image_size,
            augment=self.cfg.train.augment,
            attributes=self.names,
        )
        return torch.from_numpy(out["image"]), torch.from_numpy(out["labels"])  # (B, 3, S, S) uint8, (B, A) int16


def plain_steps(
    check: Check, cfg: Config, batches: Callable[[int], Any], epochs: int
) -> tuple[list[float], list[float]]:
    """Stage 2's steps (fsnet.training.local_step, SGD, the same weights to start) in a plain loop: images/s and
    seconds per epoch."""
    device = check.device
    model = model_from_bytes(check.storage.read_bytes(check.model_url)).to(device)
    optimizer = make_optimizer(trainable(model, 2), cfg.train.stage2, cfg.train)
    loss_fn = StageLoss(cfg.train.stage2, model.variant)
    generator = torch.Generator().manual_seed(cfg.train.seed * 1000)
    rates, seconds = [], []
    for epoch in range(epochs):
        training_mode(model, cfg.train)
        start, images = time.perf_counter(), 0
        for x, y in batches(epoch):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss, stats = local_step(model, x, y, loss_fn, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += stats.images
        sync(device)
        seconds.append(time.perf_counter() - start)
        rates.append(rate(images, seconds[-1]))
    return rates, seconds


def training(check: Check) -> dict[str, Any]:
    a, cfg = check.args, check.config()
    catalog = Catalog.open(check.catalog_url, check.storage)
    stage2 = next(s for s in training_plan(cfg) if s.name == "stage2")
    run_dir = join(check.work, "run")
    start = time.perf_counter()
    try:  # where Ray Train fails, the plain loop's figures are still worth the call
        run_stage(cfg, catalog, check.storage, run_dir, stage2, check.model_url)  # Ray Train, 1 worker
        ray_error = None
    except Exception as err:  # noqa: BLE001 - recorded as the part's error, after the plain loop
        ray_error = {"error": f"{type(err).__name__}: {str(err)[:1500]}", "traceback": traceback.format_exc()[-6000:]}
        say(f"training: Ray Train FAILED: {ray_error['error'][:300]}")
    stage_s = time.perf_counter() - start
    metrics = join(run_dir, METRICS_FILE)
    lines = [json.loads(x) for x in check.storage.read_text(metrics).splitlines() if x.strip()] if not ray_error else []
    epochs = [m for m in lines if m["stage"] == 2]
    ray_rates = [round(m["images_per_s"], 1) for m in epochs]
    say(f"training: Ray Train stage 2: {ray_rates} images/s per epoch, whole stage {stage_s:.1f} s")
    stop_ray()  # the plain loop's DataLoader forks: no Ray threads in the parent, and its CPUs back
    say("training: Ray shut down; the plain loop")

    fit_ids, _ = training_ids(cfg, catalog)
    names = catalog.schema.names
    rows = catalog.rows(fit_ids.tolist(), ["image", *names])
    workers = max(1, check.cpus - 1)  # the CPUs Ray Data's decode tasks had beside the worker's one

    def loader(epoch: int) -> torch.utils.data.DataLoader:
        order = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(rows["image"]))
        return torch.utils.data.DataLoader(
            DecodedBatches(rows, order, cfg, names),
            batch_size=None,
            num_workers=workers,
            pin_memory=check.gpus > 0,
            prefetch_factor=4,
        )

    loader_rates, loader_s = plain_steps(check, cfg, loader, a.train_epochs)
    say(f"training: plain loop with a DataLoader of {workers} workers: {loader_rates} images/s per epoch")
    resident_rates = None
    if not check.over_budget():

        def steps_alone() -> list[float]:
            held = [(x.to(check.device), y.to(check.device)) for x, y in loader(0)]  # decoded once, on the device

            def resident(epoch: int):
                return (held[i] for i in np.random.default_rng([cfg.train.seed, epoch]).permutation(len(held)))

            return plain_steps(check, cfg, resident, a.train_epochs)[0]

        resident_rates = guarded("training: the steps alone", steps_alone)
        say(f"training: the steps alone on batches held on the device: {resident_rates} images/s per epoch")
    figures = {
        "device": str(check.device),
        "plain_loader_images_per_s": loader_rates,
        "plain_loader_workers": workers,
        "plain_resident_images_per_s": resident_rates,
        "steady_plain_images_per_s": loader_rates[-1],
    }
    if ray_error:
        return {**figures, "ok": False, **ray_error}
    ray_steady, plain_steady = ray_rates[-1], loader_rates[-1]
    return {
        **figures,
        "images_per_epoch": int(epochs[-1]["images"]) if epochs else 0,
        "batch": cfg.train.batch_size,
        "epochs": a.train_epochs,
        "ray_train_images_per_s": ray_rates,
        "ray_train_stage_s": round(stage_s, 2),
        "ray_train_epochs_s": round(sum(m["images"] / m["images_per_s"] for m in epochs), 2),
        "steady_ray_train_images_per_s": ray_steady,
        "ray_train_overhead": round(1 - ray_steady / plain_steady, 3),  # the goal: <= 0.10
    }


# ----- evaluation ----------------------------------------------------------------------------------------------------
def protocol_data(args: argparse.Namespace) -> tuple[LinearGlobal, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """bench/eval_bench.py's protocol: labels in product families (a prototype per family, each attribute redrawn
    with probability --redraw), representations that cluster by value, the memory block near the value centres,
    lambda_a in [0.5, 2], w_r a random projection. (model, query reps (Q, A, D), gallery F (N, r), query labels,
    gallery labels)."""
    rng = np.random.default_rng(0)
    d, r = args.embed_dim, args.global_dim
    prototypes = np.stack([rng.integers(0, v, args.families) for v in NUM_VALUES], 1)

    def labels(n: int) -> np.ndarray:
        out = prototypes[rng.integers(0, len(prototypes), n)].copy()
        fresh = np.stack([rng.integers(0, v, n) for v in NUM_VALUES], 1)
        return np.where(rng.random(out.shape) < args.redraw, fresh, out)

    centres = [rng.standard_normal((v, d)).astype(np.float32) for v in NUM_VALUES]

    def reps(values: np.ndarray) -> np.ndarray:
        out = rng.standard_normal((len(values), len(NUM_VALUES), d)).astype(np.float32)  # (n, A, D)
        for a, c in enumerate(centres):
            out[:, a] += c[values[:, a]]
        return out

    memory = np.concatenate([c + 0.05 * rng.standard_normal(c.shape) for c in centres])  # (C, D) near the means
    a = len(NUM_VALUES)
    model = LinearGlobal(
        rng.uniform(0.5, 2.0, a), rng.standard_normal((a, d, r)) / np.sqrt(a * d), memory.astype(np.float64), NUM_VALUES
    )
    query_labels, gallery_labels = labels(args.queries), labels(args.gallery)
    gallery = model.global_of(reps(gallery_labels).astype(np.float64)).astype(np.float32)  # (N, r)
    return model, reps(query_labels), gallery, query_labels, gallery_labels


def evaluation(check: Check) -> dict[str, Any]:
    a = check.args
    model, query_reps, gallery, query_labels, gallery_labels = protocol_data(a)
    names = [f"attr{i}" for i in range(len(NUM_VALUES))]
    manipulations = build_manipulations(query_labels, gallery_labels, names, NUM_VALUES)
    device = topk._device()
    say(f"evaluation: {a.queries:,} queries x {a.gallery:,} gallery, {len(manipulations):,} manipulations on {device}")
    warm = build_manipulations(query_labels[:8], gallery_labels, names, NUM_VALUES)
    topk.factorized_topk(model, query_reps[:8], gallery, warm, a.k)  # warm-up: CUDA context, cuBLAS handles
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    fast = topk.factorized_topk(model, query_reps, gallery, manipulations, a.k)
    sync(device)
    fast_s = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    say(f"evaluation: factorized {fast_s:.2f} s")
    start = time.perf_counter()
    slow = topk.brute_force_topk(model, query_reps, gallery, manipulations, a.k)
    slow_s = time.perf_counter() - start
    say(f"evaluation: faiss brute force {slow_s:.2f} s")
    out = {
        "device": str(device),
        "queries": a.queries,
        "gallery": a.gallery,
        "attributes": len(NUM_VALUES),
        "embed_dim": a.embed_dim,
        "global_dim": a.global_dim,
        "k": a.k,
        "manipulations": len(manipulations),
        "manipulations_per_query": round(len(manipulations) / a.queries, 2),
        "factorized_s": round(fast_s, 3),
        "faiss_s": round(slow_s, 3),
        "speedup_vs_faiss": round(slow_s / fast_s, 3),
        "identical_top_k": bool((fast.positions == slow.positions).all()),
        "full_rows": fast.full_rows,
        "exact_rows": fast.exact_rows,
        "peak_gpu_mib": round(peak, 1) if peak is not None else None,
        "faiss_threads": faiss_threads(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type != "cpu" and not check.over_budget():

        def on_cpu() -> dict[str, Any]:
            with mock.patch.object(topk, "_device", lambda: torch.device("cpu")):  # the evaluator picks CUDA itself
                start = time.perf_counter()
                top = topk.factorized_topk(model, query_reps, gallery, manipulations, a.k)
                seconds = time.perf_counter() - start
            return {"seconds": round(seconds, 3), "identical_top_k": bool((top.positions == slow.positions).all())}

        out["factorized_cpu"] = guarded("evaluation: factorized on the CPU", on_cpu)
        say(f"evaluation: factorized on the CPU {out['factorized_cpu']}")
    return out


def faiss_threads() -> int | None:
    import faiss

    return faiss.omp_get_max_threads() if hasattr(faiss, "omp_get_max_threads") else None


# ----- the run -------------------------------------------------------------------------------------------------------
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine(cpus: int, gpus: int) -> dict[str, Any]:
    import faiss

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": cpus,
        "gpus": gpus,
        "gpu": [torch.cuda.get_device_name(i) for i in range(gpus)],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda,
        "ray": ray.__version__,
        "faiss": getattr(faiss, "__version__", None),
        "numpy": np.__version__,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "shm_gib": round(shutil.disk_usage("/dev/shm").total / 2**30, 1) if os.path.isdir("/dev/shm") else None,
    }


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The goals, met or not, where the figures exist (they are stated for an H100/H200)."""
    out: dict[str, Any] = {}
    ex, tr = results.get("extraction", {}), results.get("training", {})
    if ex.get("ok"):  # judged on the steady rate: a real catalog amortises the run's fixed start-up
        out["extraction_images_per_s"] = {
            "goal": GOAL_EXTRACTION,
            "steady": ex["steady_images_per_s"],
            "end_to_end": ex["end_to_end_images_per_s"],
            "met": ex["steady_images_per_s"] >= GOAL_EXTRACTION,
        }
        out["extraction_ratio_to_model_only"] = {
            "goal": GOAL_EXTRACTION_RATIO,
            "steady": ex["ratio_steady_to_model_only"],
            "end_to_end": ex["ratio_end_to_end_to_model_only"],
            "met": ex["ratio_steady_to_model_only"] >= GOAL_EXTRACTION_RATIO,
        }
    if tr.get("ok"):
        out["ray_train_overhead"] = {
            "goal": GOAL_TRAIN_OVERHEAD,
            "measured": tr["ray_train_overhead"],
            "met": tr["ray_train_overhead"] <= GOAL_TRAIN_OVERHEAD,
        }
    return out


def show(results: dict[str, Any]) -> None:
    where = ", ".join(results["machine"]["gpu"]) or ("no GPU: CPU dry run" if results["dry_run"] else "no GPU: CPU")
    table = Table(title=f"fsnet GPU check ({where})")
    for column in ("part", "measurement", "figure"):
        table.add_column(column)
    for part in ("setup", "extraction", "training", "evaluation"):
        entry = results.get(part)
        if entry is None:
            continue
        status = f"ok, {entry['seconds']:.1f} s" if entry.get("ok") else f"FAILED: {str(entry.get('error'))[:120]}"
        table.add_row(part, "status", status)
        if not entry.get("ok"):
            continue
        for label, value in rows_of(part, entry):
            table.add_row("", label, value)
    for name, goal in results.get("goals", {}).items():
        table.add_row("goal", name, f"{'met' if goal['met'] else 'NOT met'} ({goal})")
    Console(width=160).print(table)


def rows_of(part: str, e: dict[str, Any]) -> list[tuple[str, str]]:
    """(measurement, figure) lines of one part's entry for the table."""
    if part == "setup":
        m = e["model"]
        catalog = f"{e['images']:,} images ({e['distinct_images']:,} distinct) at {e['image_size']} px"
        return [
            ("catalog", f"{catalog}, {e['shards']} shards, {e['jpeg_bytes_mean']:,} B per JPEG"),
            ("model", f"{m['backbone']}, weights {m['weights']}, {m['parameters']:,} parameters"),
        ]
    if part == "extraction":
        rows = []
        for s in e["settings"]:
            figures = s.get("error") or s.get("skipped")
            if figures is None:
                figures = f"{s['end_to_end_images_per_s']} / {s['marginal_images_per_s']} images/s"
            rows.append((f"fsnet index, {s['actors']} actor(s): end to end / steady", str(figures)[:100]))
        ratios = f"{e['ratio_end_to_end_to_model_only']} / {e['ratio_steady_to_model_only']}"
        return rows + [
            ("model alone (same batch)", f"{e['model_only_images_per_s']} images/s"),
            ("ratio to the model alone: end to end / steady", ratios),
            ("decode alone", ", ".join(f"{k} {v}" for k, v in e["decode_only"].items())),
        ]
    if part == "training":
        return [
            ("Ray Train stage 2, images/s per epoch", str(e["ray_train_images_per_s"])),
            ("plain loop + DataLoader, images/s per epoch", str(e["plain_loader_images_per_s"])),
            ("the steps alone (batches on the device)", str(e["plain_resident_images_per_s"])),
            ("Ray Train overhead (last epoch)", f"{e['ray_train_overhead']:.1%}"),
        ]
    protocol = f"{e['queries']:,} x {e['gallery']:,}, {e['manipulations']:,} manipulations, r = {e['global_dim']}"
    times = f"{e['factorized_s']} s / {e['faiss_s']} s ({e['speedup_vs_faiss']}x)"
    return [
        ("protocol", protocol),
        (f"factorized on {e['device']} / faiss brute force", times),
        ("identical Top-K", str(e["identical_top_k"])),
        ("factorized on the CPU", str(e.get("factorized_cpu", "-"))[:100]),
    ]


PARTS = [("extraction", extraction, ("setup",)), ("training", training, ("setup",)), ("evaluation", evaluation, ())]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "gpu_check.json")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, the tiny backbone: the code paths only")
    parser.add_argument("--work", help="folder for the catalog, model and indexes (default: a temporary one)")
    parser.add_argument("--parts", default="extraction,training,evaluation", help="comma-separated subset")
    parser.add_argument("--actors-per-gpu", default="1,2", help="embed actors per GPU to measure, e.g. 1,2")
    parser.add_argument("--budget-s", type=float, default=300.0, help="past this, optional runs are skipped")
    parser.add_argument(
        "--deadline-s", type=float, default=450.0, help="the whole run's limit: a part past its share is stopped"
    )
    for name, value in FULL.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None, help=f"default {value}")
    args = parser.parse_args(argv)
    for name, value in (DRY if args.dry_run else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.actors_per_gpu = [int(x) for x in str(args.actors_per_gpu).split(",") if x.strip()]
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = [p for p in args.parts if p not in [name for name, _, _ in PARTS]]
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; the parts are {', '.join(n for n, _, _ in PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cpus, gpus = os.cpu_count() or 1, torch.cuda.device_count()
    if gpus == 0 and not args.dry_run:
        say("no CUDA device: running the full sizes on the CPU (slow); --dry-run runs the tiny sizes")
    with contextlib.ExitStack() as stack:
        work = args.work or stack.enter_context(tempfile.TemporaryDirectory(prefix="fsnet-gpu-check-"))
        check = Check(args, os.path.abspath(work), args.out, cpus, gpus)
        check.results.update(
            format=1,
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            **provenance(),  # date, command and code version, as every bench/results file records them
            dry_run=args.dry_run,
            machine=machine(cpus, gpus),
            settings={k: v for k, v in vars(args).items() if k not in ("out", "work")},
        )
        say(f"machine: {check.results['machine']}")
        if {"extraction", "training"} & set(args.parts):
            try:  # on the main thread, as Ray prefers; setup tries again (guarded) where this fails
                check.results["ray_start_s"] = round(start_ray(cpus, gpus), 2)
                check.results["ray_resources"] = {k: round(v, 1) for k, v in ray.cluster_resources().items()}
                say(f"Ray started in {check.results['ray_start_s']:.1f} s: {check.results['ray_resources']}")
            except Exception as err:  # noqa: BLE001 - recorded; the parts without Ray still run
                check.results["ray_start_error"] = f"{type(err).__name__}: {str(err)[:1500]}"
                say(f"Ray did not start: {check.results['ray_start_error'][:300]}")
            check.part("setup", setup)
        for name, run, needs in PARTS:  # in this order: training ends by shutting Ray down
            if name in args.parts:
                check.part(name, run, needs)
        if ray.is_initialized():
            stop_ray()
        check.results["goals"] = goals(check.results)
        check.write()
    show(check.results)
    say(f"figures written to {args.out}")
    failed = [p for p in ("setup", *args.parts) if p in check.results and not check.results[p]["ok"]]
    if check.hung:  # a stuck part's thread or Ray's exit hooks must not keep the process past the deadline
        sys.stdout.flush()
        os._exit(1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
