"""The training loops every Ray Train worker runs (jobs/train.py, the driver, starts them): ``stage_loop`` for a
stage on images (cached trunk maps or decoded images), ``global_loop`` for a stage on the fixed features
(FashionSearchNet's stage 3). Each reads a ``LoopConfig`` the driver fills, and ends its epochs through ``Worker``:
the figures all-reduced, the validation images scored, the best epoch kept, a checkpoint reported."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow.dataset as pads
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from eval.validation_ranking import validation_top_k
from fsnet.cached_batches import CachedBatches
from fsnet.columns import column_array
from fsnet.config import Config, StageConfig
from fsnet.epoch_selection import better_epoch
from fsnet.losses import StageLoss
from fsnet.losses.stage_loss import TERMS
from fsnet.lr_schedule import StageSchedule
from fsnet.model import RetrievalModel, Stage, save_model
from fsnet.model.batch_norm import reestimate_statistics, trained_batch_norms, training_mode
from fsnet.model.checkpoint import model_from_bytes
from fsnet.sampling import GlobalTripletSampler
from fsnet.storage import Storage, join
from fsnet.training import (
    EpochMeter,
    epoch_metrics,
    global_step,
    image_step,
    in_training_layout,
    make_optimizer,
    trainable,
)
from fsnet.trunk_features import TrunkCache
from fsnet.validation_set import ValidationSet
from jobs.injected_fault import InjectedFault

METRICS_FILE = "train_metrics.jsonl"  # rank 0 appends each epoch's figures; the driver prints them
SELECT_K = 20  # a stage keeps its epoch of best validation Top-20 (the report's headline K)


@dataclass(frozen=True)
class LoopConfig:
    """What the driver hands each worker of a stage (Ray pickles it into every one)."""

    cfg: Config
    stage: Stage
    start_url: str  # the model the stage starts from
    out: str  # the run's folder: metrics, selections, <stage>.best.pt
    validation: ValidationSet | None  # the images epochs are selected on
    trunk_cache: str | None = None  # a frozen trunk: the cache entry whose maps the workers read themselves
    fit_ids: np.ndarray | None = None  # ... of these training images, in catalog order
    fit_labels: np.ndarray | None = None  # (n, A) their labels
    fit_images: int | None = None  # a streaming stage: the training images' count (its steps per epoch)
    fault: InjectedFault | None = None  # test only (jobs/injected_fault.py)


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block (a CPU worker's own count is the CPUs it holds)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# ----- the loops (run on every Ray Train worker) -------------------------------------------------------------
@dataclass
class Worker:
    """What a stage's loop shares with its epoch end and its fault: the run, the stage, and this worker's place."""

    cfg: Config
    storage: Storage
    out: str
    stage: Stage
    rank: int
    world: int
    local_world: int = 1  # workers of this run on this worker's node

    fault: InjectedFault | None = None

    @classmethod
    def current(cls, loop: LoopConfig) -> "Worker":
        """From the stage's loop configuration and Ray Train's context."""
        context = ray.train.get_context()  # Ray: this worker's rank and the world size
        return cls(
            loop.cfg,
            Storage(loop.cfg.storage),
            loop.out,
            loop.stage,
            context.get_world_rank(),
            context.get_world_size(),
            context.get_local_world_size(),
            loop.fault,
        )

    @property
    def settings(self) -> StageConfig:
        """train.<section>: the stage's epochs, learning rate and loss weights."""
        return getattr(self.cfg.train, self.stage.section)

    @property
    def schedule(self) -> str:
        """The stage's rate schedule: train.<section>.schedule, else train.schedule."""
        return self.settings.schedule or self.cfg.train.schedule

    def end_epoch(
        self,
        epoch: int,
        step: int,
        model: RetrievalModel,
        optimizer: torch.optim.Optimizer,
        meter: EpochMeter,
        terms: list[str],
        start: float,
        validation: ValidationSet | None = None,
        reps: np.ndarray | None = None,
    ) -> None:
        """All-reduce the epoch's figures, score the validation images and keep the best epoch (rank 0), report
        them with rank 0's checkpoint, and log them (rank 0)."""
        totals = meter.totals(terms)
        if self.world > 1:  # on the workers' device: NCCL (GPU workers) reduces CUDA tensors only
            totals = totals.to(next(model.parameters()).device)
            dist.all_reduce(totals)
            totals = totals.cpu()
        metrics = epoch_metrics(totals, terms, model.schema.names, time.perf_counter() - start)
        metrics.update(stage=self.stage.number, epoch=epoch, step=step, lr=optimizer.param_groups[0]["lr"])
        if self.rank == 0 and validation is not None:
            with torch_threads(torch.get_num_threads() * self.local_world):  # the others wait in report: idle cores
                metrics.update(self.select(epoch, model, validation, reps))
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if self.rank == 0:
                state = {
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "step": step,
                }
                torch.save(state, os.path.join(directory, "state.pt"))
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=checkpoint)  # Ray: metrics, and rank 0's checkpoint kept on storage
        if self.rank == 0:
            line = json.dumps({**metrics, "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
            url = join(self.out, METRICS_FILE)
            previous = self.storage.read_text(url) if self.storage.exists(url) else ""
            self.storage.write_text(url, previous + line + "\n")  # the driver prints it (jobs/epoch_progress.py)

    def select(
        self, epoch: int, model: RetrievalModel, validation: ValidationSet, reps: np.ndarray | None
    ) -> dict[str, float]:
        """Validation figures of this epoch's model; the best epoch's model kept as <stage>.best.pt (rank 0).
        Stage 1 (no representations yet) selects by classifier accuracy, later stages by validation Top-20 of the
        evaluation's manipulations (eval/validation_ranking.py). ``reps``: the fixed validation features of a
        stage on features (stage 3), else they are embedded now."""
        device = next(model.parameters()).device
        figures: dict[str, float] = {}
        scored = model
        if not validation.from_trunk and trained_batch_norms(model, self.cfg.train):
            # scored as the stage's result will be: with statistics re-estimated on plain images (run_stage)
            batches = torch.tensor(validation.memory_inputs).split(self.cfg.train.batch_size)  # a copy: read-only
            scored = reestimate_statistics(copy.deepcopy(model), batches, self.cfg.train)
        if reps is None:
            reps, predicted = validation.embed(scored, validation.inputs, device)
            figures["val_accuracy"] = validation.accuracy(predicted)
        if self.stage.number > 1:
            # stage 3 comes after the memory stage; before it, the training sample's means stand in for the memory
            if self.stage.number < 3:
                scored = validation.with_sample_memory(scored, device)
            top = validation_top_k(scored, reps, validation.labels, k=SELECT_K)
            if top is not None:
                figures[f"val_top{SELECT_K}"] = top
        url = join(self.out, f"{self.stage.name}.selection.json")
        record = json.loads(self.storage.read_text(url)) if self.storage.exists(url) else {}
        # the stage's metric is chosen once, at its first scored epoch: Top-20 where the validation images hold
        # targets of manipulations, else classifier accuracy; an epoch without that figure cannot be the best
        metric = record.get("metric") or (f"val_top{SELECT_K}" if f"val_top{SELECT_K}" in figures else "val_accuracy")
        history = [h for h in record.get("history", []) if h["epoch"] < epoch] + [{"epoch": epoch, **figures}]
        kept = next((h for h in history if h["epoch"] == record.get("best_epoch")), None)
        if better_epoch(figures, kept, metric):  # ties: the better classifier accuracy, then the later epoch
            save_model(model, join(self.out, f"{self.stage.name}.best.pt"), self.storage)
            record.update(best=figures[metric], best_epoch=epoch)
        record.update(metric=metric, history=history)
        self.storage.write_text(url, json.dumps(record, indent=1))
        model.train()
        return figures

    def record_start(self, top: float | None) -> None:
        """The validation Top-20 of the stage's starting model, beside its epochs' (rank 0)."""
        url = join(self.out, f"{self.stage.name}.selection.json")
        record = json.loads(self.storage.read_text(url)) if self.storage.exists(url) else {}
        record.setdefault(f"start_val_top{SELECT_K}", top)
        self.storage.write_text(url, json.dumps(record, indent=1))

    def maybe_fail(self, step: int) -> None:
        """Test only: the last worker dies once at the injected fault's stage and step (jobs/injected_fault.py)."""
        if self.fault is not None and self.rank == self.world - 1:
            self.fault.fire(self.storage, self.out, self.stage.number, step)


def stage_loop(config: dict) -> None:
    """A stage on images (the plan's "images" stages): an ordinary PyTorch loop over this worker's share of the
    decoded training split, each batch one step of the stage's kind (local or manipulation)."""
    loop: LoopConfig = config["loop"]
    worker = Worker.current(loop)
    cfg, stage = worker.cfg, worker.stage
    settings = worker.settings

    model = model_from_bytes(worker.storage.read_bytes(loop.start_url))
    model = in_training_layout(model)
    frozen = cfg.train.trunk == "frozen"
    params = trainable(model, stage.number, frozen_trunk=frozen)
    optimizer = make_optimizer(params, settings, cfg.train, tuned=model.backbone.tuned().parameters())
    batches, steps_per_epoch = _batches(worker, loop)
    schedule = StageSchedule(optimizer, worker.schedule, settings.epochs, steps_per_epoch)  # before the restore
    epoch0, step = _restore(model, optimizer)
    net = ray.train.torch.prepare_model(model)  # Ray: DDP (gloo on CPU, NCCL on GPU) on this worker's device
    device = ray.train.torch.get_device()
    loss_fn = StageLoss(settings, model.variant, cfg.train.label_smoothing)
    terms = [t for t in TERMS if t != "g" and loss_fn.needs(t)]
    generator = torch.Generator().manual_seed(cfg.train.seed * 1000 + worker.rank)

    for epoch in range(epoch0, settings.epochs):
        # the heads' dropout draws from torch's global generator, whose state a reused Ray worker process brings
        # from whatever ran there before: seeded per (seed, stage, epoch, rank), a run repeats itself
        torch.manual_seed(
            int(np.random.SeedSequence([cfg.train.seed, stage.number, epoch, worker.rank]).generate_state(1)[0])
        )
        training_mode(model, cfg.train)  # the frozen trunk, or a pretrained trunk's frozen BatchNorm, in eval mode
        meter, start = EpochMeter(len(model.schema.names)), time.perf_counter()
        for i, batch in enumerate(batches(epoch)):
            worker.maybe_fail(step)
            schedule.set(epoch, i)
            images, labels = batch["image"].to(device), batch["labels"].to(device)
            stats = image_step(stage.step, net, model, images, labels, loss_fn, optimizer, generator, frozen)
            meter.add(stats)
            step += 1
        worker.end_epoch(epoch, step, model, optimizer, meter, terms, start, validation=loop.validation)


def _batches(worker: Worker, loop: LoopConfig) -> tuple[Callable[[int], Iterable[dict[str, torch.Tensor]]], int]:
    """(epoch -> this worker's batches, batches per epoch): the frozen trunk's cached maps
    (fsnet/cached_batches.py), or decoded images from the streaming Ray Data pipeline the driver set up, whose
    count per epoch is the even share of the training images (an estimate: Ray Data splits by blocks)."""
    cfg = worker.cfg
    if cfg.train.trunk == "frozen":
        found, arrays = TrunkCache.open(loop.trunk_cache, worker.storage).read(loop.fit_ids, maps=True)
        cached = CachedBatches(
            arrays["maps"], loop.fit_labels[found], cfg.train.batch_size, worker.rank, worker.world, cfg.train.seed
        )
        return (lambda epoch: cached.epoch(epoch, flip=cfg.train.augment.flip)), cached.steps
    shard = ray.train.get_dataset_shard("train")  # Ray: this worker's split of the streaming decode pipeline
    batches = lambda epoch: shard.iter_torch_batches(  # noqa: E731
        batch_size=cfg.train.batch_size,
        drop_last=True,
        local_shuffle_buffer_size=cfg.train.shuffle_buffer or None,
    )
    return batches, loop.fit_images // worker.world // cfg.train.batch_size


def global_loop(config: dict) -> None:
    """A stage on the fixed features (FashionSearchNet's stage 3, L_G): each worker takes its share of queries."""
    loop: LoopConfig = config["loop"]
    worker = Worker.current(loop)
    cfg, rank, world = worker.cfg, worker.rank, worker.world
    settings = worker.settings
    device = ray.train.torch.get_device()

    model = model_from_bytes(worker.storage.read_bytes(loop.start_url))
    params = trainable(model, worker.stage.number)
    optimizer = make_optimizer(params, settings, cfg.train)
    names, num_values = model.schema.names, model.schema.num_values
    fs, path = worker.storage.arrow_fs(join(loop.out, "features"))
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(
        columns=["id", "reps", *names], filter=pads.field("error").is_null()
    )
    table = table.sort_by("id")  # the embed pool wrote rows as its actors finished: one order, so a seed repeats
    reps = torch.from_numpy(column_array(table, "reps", (len(names), cfg.model.embed_dim))).to(device)  # (N, A, D)
    labels = np.stack([table[a].to_numpy() for a in names], axis=1)
    sampler = GlobalTripletSampler(labels, num_values)
    complete = np.flatnonzero((labels >= 0).all(axis=1))
    loss_fn = StageLoss(settings, model.variant)
    steps_per_epoch = max(1, len(complete) // (world * cfg.train.global_batch))  # equal on every worker
    schedule = StageSchedule(optimizer, worker.schedule, settings.epochs, steps_per_epoch)  # before the restore
    epoch0, step = _restore(model, optimizer)
    model.to(device)
    validation = loop.validation
    val_reps = None
    if validation is not None and rank == 0:  # the starting point the epochs are compared with
        val_reps = validation.embed(model, validation.inputs, device)[0]
        worker.record_start(validation_top_k(model, val_reps, validation.labels, k=SELECT_K))

    for epoch in range(epoch0, settings.epochs):
        model.train()
        rng = np.random.default_rng([cfg.train.seed, epoch])
        mine = rng.permutation(complete)[rank::world]
        worker_rng = np.random.default_rng([cfg.train.seed, epoch, rank])
        meter, start = EpochMeter(len(names)), time.perf_counter()
        for i in range(steps_per_epoch):
            worker.maybe_fail(step)
            schedule.set(epoch, i)
            queries = mine[i * cfg.train.global_batch : (i + 1) * cfg.train.global_batch]
            loss, stats = global_step(model, reps, sampler, queries, worker_rng, loss_fn, negatives=cfg.train.negatives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:  # the few stage-3 parameters: average their gradients by hand instead of wrapping in DDP
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad)
                    p.grad /= world
            optimizer.step()
            meter.add(stats)
            step += 1
        worker.end_epoch(epoch, step, model, optimizer, meter, ["g"], start, validation, val_reps)


def _restore(model: RetrievalModel, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """(first epoch, step) to run: from this stage's last checkpoint after a worker restart or a re-run."""
    checkpoint = ray.train.get_checkpoint()  # Ray: the latest checkpoint reported by this stage's run, if any
    if checkpoint is None:
        return 0, 0
    with checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, "state.pt"), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"] + 1, state["step"]
