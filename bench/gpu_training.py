"""The GPU check's training part: one Ray Train stage 2 (jobs.train.run_stage: TorchTrainer, 1 worker, Ray Data decode
tasks) against a plain PyTorch loop of the same steps (fsnet.training.image_step, in the training layout) from the
same weights on the same device, fed by a DataLoader running the same decode (fsnet.training.decode_for_training) in
one process per CPU Ray Data had; and the steps alone on batches already on the device (the step ceiling). It ends
by shutting Ray down."""

from __future__ import annotations

import json
import time
import traceback
from typing import Any, Callable

import numpy as np
import torch

from fsnet.catalog.reader import Catalog
from fsnet.config import Config
from fsnet.losses import StageLoss
from fsnet.model.batch_norm import training_mode
from fsnet.model.checkpoint import model_from_bytes
from fsnet.storage import join
from fsnet.training import decode_for_training, image_step, in_training_layout, make_optimizer, trainable
from jobs.train import run_stage, training_plan
from jobs.train_loop import METRICS_FILE
from jobs.training_split import TrainingSplit

try:  # run as a script: bench/ is on sys.path (the GPU machine runs it so)
    from gpu_harness import Check, guarded, rate, say, stop_ray, sync
except ImportError:  # imported as bench.gpu_training
    from bench.gpu_harness import Check, guarded, rate, say, stop_ray, sync

GOAL_TRAIN_OVERHEAD = 0.10  # Ray Train against a plain loop


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
    """Stage 2's steps (fsnet.training.image_step, the training loop's step, from the same weights in the same layout)
    in a plain loop: images/s and seconds per epoch."""
    device = check.device
    model = in_training_layout(model_from_bytes(check.storage.read_bytes(check.model_url)).to(device))
    optimizer = make_optimizer(trainable(model, 2), cfg.train.stage2, cfg.train)
    loss_fn = StageLoss(cfg.train.stage2, model.variant)
    generator = torch.Generator().manual_seed(cfg.train.seed * 1000)
    rates, seconds = [], []
    for epoch in range(epochs):
        training_mode(model, cfg.train)
        start, images = time.perf_counter(), 0
        for x, y in batches(epoch):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            images += image_step("local", model, model, x, y, loss_fn, optimizer, generator).images
        sync(device)
        seconds.append(time.perf_counter() - start)
        rates.append(rate(images, seconds[-1]))
    return rates, seconds


def run(check: Check) -> dict[str, Any]:
    a, cfg = check.args, check.config()
    catalog = Catalog.open(check.catalog_url, check.storage)
    split = TrainingSplit.of(cfg, catalog)
    stage2 = next(s for s in training_plan(cfg) if s.name == "stage2")
    run_dir = join(check.work, "run")
    start = time.perf_counter()
    try:  # where Ray Train fails, the plain loop's figures are still worth the call
        run_stage(cfg, split, check.storage, run_dir, stage2, check.model_url)  # Ray Train, 1 worker
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

    names = catalog.schema.names
    rows = catalog.rows(split.fit_ids.tolist(), ["image", *names])
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


def goals(e: dict[str, Any]) -> dict[str, Any]:
    return {
        "ray_train_overhead": {
            "goal": GOAL_TRAIN_OVERHEAD,
            "measured": e["ray_train_overhead"],
            "met": e["ray_train_overhead"] <= GOAL_TRAIN_OVERHEAD,
        }
    }


def rows(e: dict[str, Any]) -> list[tuple[str, str]]:
    """(measurement, figure) lines of the part's entry for the table."""
    return [
        ("Ray Train stage 2, images/s per epoch", str(e["ray_train_images_per_s"])),
        ("plain loop + DataLoader, images/s per epoch", str(e["plain_loader_images_per_s"])),
        ("the steps alone (batches on the device)", str(e["plain_resident_images_per_s"])),
        ("Ray Train overhead (last epoch)", f"{e['ray_train_overhead']:.1%}"),
    ]
