"""Before a training starts: how long its stages on images will take, images x epochs at a rate measured here, on a
few steps of each stage from the starting weights on the training sample (the validation set's, already in memory),
one torch thread per worker as a CPU worker runs it, plus each epoch's validation (rank 0 embeds the validation
images, and in stage 2 the training sample that stands in for the memory), timed on a part of them and scaled.
Printed as one line per stage and a total; the memory stage (embedding the training images as the index does) and
stage 3 (on fixed features) are quick beside them and left out.

An estimate, and said to be one: the workers also wait on their data, exchange their gradients and share the
machine's cores with the decode tasks, so a run takes at least this long. With GPU workers the driver has no GPU to
measure on (and prints why)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from fsnet.config import Config
from fsnet.losses import StageLoss
from fsnet.model import RetrievalModel, Stage
from fsnet.model.batch_norm import training_mode
from fsnet.training import image_step, in_training_layout, make_optimizer, trainable
from fsnet.validation_set import ValidationSet
from jobs.train_loop import torch_threads

CPU = torch.device("cpu")
STEPS = 3  # timed steps per stage, after one to warm up
VALIDATION_TIMED = 128  # validation inputs embedded to time an epoch's validation, after a few to warm up


@dataclass(frozen=True)
class StageEstimate:
    stage: Stage
    images: int  # per epoch
    epochs: int
    images_per_s: float  # all workers together
    validation_s: float = 0.0  # per epoch, on rank 0 while the others wait

    @property
    def seconds(self) -> float:
        return self.images * self.epochs / self.images_per_s + self.epochs * self.validation_s


def estimate(
    cfg: Config, plan: list[Stage], start: RetrievalModel, sample: ValidationSet, images: int
) -> list[StageEstimate]:
    """One estimate per stage on images with epochs to run; ``start``: the model every stage-1 worker starts from,
    ``sample``: its memory_inputs (cached maps or decoded images) and labels feed the timed steps."""
    batch = min(cfg.train.batch_size, len(sample.memory_inputs))
    if batch < 2:
        return []
    x = torch.tensor(sample.memory_inputs[:batch])  # a copy: the cache is read-only
    x = x.float() if x.is_floating_point() else x  # cached maps are float16, as the workers' batches make them float
    y = torch.tensor(sample.memory_labels[:batch]).long()
    per_input = embed_seconds(start, sample)  # the same model embeds every stage's validation: timed once
    out = []
    for stage in plan:
        if stage.data != "images" or getattr(cfg.train, stage.section).epochs == 0:
            continue
        epochs = getattr(cfg.train, stage.section).epochs
        seconds = timed_steps(cfg, stage, start, x, y)
        rate = batch * STEPS / seconds * cfg.train.workers
        embedded = len(sample.inputs) + (len(sample.memory_inputs) if stage.number == 2 else 0)
        out.append(StageEstimate(stage, images, epochs, rate, per_input * embedded))
    return out


def timed_steps(cfg: Config, stage: Stage, start: RetrievalModel, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds of STEPS steps of ``stage`` (forward, backward, SGD) on one thread, after one step to warm up."""
    model = in_training_layout(copy.deepcopy(start))
    settings = getattr(cfg.train, stage.section)
    frozen = cfg.train.trunk == "frozen"
    optimizer = make_optimizer(
        trainable(model, stage.number, frozen_trunk=frozen), settings, cfg.train, model.backbone.tuned().parameters()
    )
    loss_fn = StageLoss(settings, model.variant, cfg.train.label_smoothing)
    generator = torch.Generator().manual_seed(0)
    training_mode(model, cfg.train)
    with torch_threads(1), torch.random.fork_rng(devices=[]):  # dropout's draws leave the driver's generator as it was
        for step in range(STEPS + 1):
            if step == 1:
                begin = time.perf_counter()
            image_step(stage.step, model, model, x, y, loss_fn, optimizer, generator, frozen)
    return time.perf_counter() - begin


def embed_seconds(start: RetrievalModel, sample: ValidationSet) -> float:
    """Seconds per input of an epoch's validation on one thread, timed on VALIDATION_TIMED of them: each epoch embeds
    the validation images, and in stage 2 the training sample whose means stand in for the memory
    (fsnet/validation_set.py). The ranking that follows is a few matrix products and left out."""
    timed = min(VALIDATION_TIMED, len(sample.inputs))
    if not timed:
        return 0.0
    model = copy.deepcopy(start)  # embed puts a model in eval mode: the caller's stays as it was
    with torch_threads(1):
        sample.embed(model, sample.inputs[:2], CPU)  # warm up
        begin = time.perf_counter()
        sample.embed(model, sample.inputs[:timed], CPU)
        return (time.perf_counter() - begin) / timed


def estimate_lines(estimates: list[StageEstimate], workers: int) -> list[str]:
    """``estimate: stage 1, 15,936 images x 4 epochs at ~52 images/s, validation ~20 s each: ~22 min`` per stage,
    then the total."""
    lines = [
        f"estimate: stage {e.stage.number}, {e.images:,} images x {e.epochs} epochs at ~{e.images_per_s:,.0f} "
        f"images/s, validation ~{duration(e.validation_s)} each: ~{duration(e.seconds)}"
        for e in estimates
    ]
    if estimates:
        total = sum(e.seconds for e in estimates)
        lines.append(
            f"estimate: ~{duration(total)} for the stages on images (rates measured here on {STEPS} steps each, "
            f"one thread per worker, {workers} worker(s); waiting for data and exchanging gradients come on top)"
        )
    return lines


def duration(seconds: float) -> str:
    """``0.3 s``, ``45 s``, ``12 min``, ``1 h 05 min``."""
    if seconds < 1:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
