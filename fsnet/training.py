"""Training steps in plain PyTorch: the data preparation of stages 1-2, one optimisation step of each stage and
the per-epoch metrics. The Ray Train loop (jobs/train.py) and the plain loop of bench/train_bench.py both call
these, so the two measure the same work.

Batches (stages 1-2): the training split in shard order with its block order randomised every epoch, decoded
and augmented by Ray Data tasks, then mixed in a local shuffle buffer of ``train.shuffle_buffer`` rows per worker
before batching ``train.batch_size`` rows. In-batch triplets of regions need a second image with the anchor's
value: with batch size B, a value of frequency p has a positive for an anchor with probability 1 - (1 - p)^(B-1)
(B = 64: 0.72 at p = 2%, 0.99 at p = 7%); rare values of long-tailed attributes find none and give no triplet.
The metrics log the valid triplets per step, so a batch size too small for a catalog shows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from fsnet.config import AugmentConfig, StageConfig, TrainConfig
from fsnet.decode import decode_batch
from fsnet.losses import (
    StageLoss,
    attribute_cross_entropy,
    memory_consistency_loss,
    off_diagonal_penalty,
    region_triplet_loss,
    soft_triplet_loss,
)
from fsnet.model.adde import AttributeDrivenNet
from fsnet.model.retrieval_model import RetrievalModel
from fsnet.sampling import (
    NEGATIVE_CANDIDATES,
    GlobalTripletSampler,
    choose_negatives,
    manipulation_triplets,
    region_triplets,
)


def decode_for_training(
    batch: dict[str, np.ndarray], *, size: int, augment: AugmentConfig | None, attributes: list[str]
) -> dict[str, np.ndarray]:
    """Ray Data batch of catalog rows -> {"image": (B, 3, S, S) uint8, "labels": (B, A) int16}."""
    images = decode_batch(list(batch["image"]), size, augment=augment)
    labels = np.stack([batch[a] for a in attributes], axis=1).astype(np.int16)
    return {"image": images.numpy(), "labels": labels}


def trainable(model: RetrievalModel, stage: int, frozen_trunk: bool = False) -> list[torch.nn.Parameter]:
    """Freeze everything but what ``stage`` trains (so DDP reduces only those), the pretrained trunk too when
    ``frozen_trunk`` (train.trunk: frozen) but for its tuned blocks (train.tuned_blocks); returns them."""
    frozen = {id(p) for p in model.backbone.cached().parameters()} if frozen_trunk else set()
    params = [p for p in model.stage_parameters(stage) if id(p) not in frozen]
    ids = {id(p) for p in params}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return params


def in_training_layout(model: RetrievalModel) -> RetrievalModel:
    """``model`` with channels-last parameters, as every training step runs it (``image_step`` makes its images
    channels-last too): oneDNN's NHWC kernels, the trunk's depthwise convolutions' backward above all, give a CPU
    step 1.2-1.3x the images/s of plain NCHW (bench/layout_bench.py)."""
    return model.to(memory_format=torch.channels_last)


def make_optimizer(
    params: list[torch.nn.Parameter], stage: StageConfig, train: TrainConfig, tuned: Iterable[torch.nn.Parameter] = ()
) -> torch.optim.Optimizer:
    """SGD on ``params``; those among them in ``tuned`` (a frozen trunk's tuned blocks) at train.tuned_lr_scale of
    the stage's rate, in a group of their own. torch's fused SGD: the same update (weight decay, momentum, step) in
    one pass over each tensor where the default takes three, which fc9's large weights make costly on a CPU
    (bench/step_bench.py)."""
    slow = {id(p) for p in tuned}
    groups = [
        {"params": [p for p in params if id(p) not in slow], "lr": stage.lr},
        {"params": [p for p in params if id(p) in slow], "lr": stage.lr * train.tuned_lr_scale},
    ]
    groups = [g for g in groups if g["params"]]
    return torch.optim.SGD(groups, lr=stage.lr, momentum=train.momentum, weight_decay=train.weight_decay, fused=True)


@dataclass
class StepStats:
    images: int
    loss: float
    terms: dict[str, float]
    triplets: int
    correct: np.ndarray  # (A,) GAP-classifier hits on known labels
    known: np.ndarray  # (A,)


def local_step(
    net: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: StageLoss,
    generator: torch.Generator | None = None,
    from_trunk: bool = False,
) -> tuple[torch.Tensor, StepStats]:
    """Stages 1-2: L_C, L_T, L_TC as the stage weighs them. ``net`` may be DDP-wrapped; ``from_trunk``: ``images``
    are the frozen trunk's cached maps."""
    heads = loss_fn.needs("t") or loss_fn.needs("tc")
    out = net(images, heads=heads, from_trunk=from_trunk)
    terms: dict[str, torch.Tensor] = {}
    triplets = 0
    if loss_fn.needs("c"):
        terms["c"] = attribute_cross_entropy(out.logits, labels, loss_fn.label_smoothing)
    if loss_fn.needs("tc"):
        terms["tc"] = attribute_cross_entropy(out.rep_logits, labels, loss_fn.label_smoothing)
    if loss_fn.needs("t"):
        found = region_triplets(labels.cpu(), generator)
        triplets = len(found)
        found = type(found)(
            *(t.to(labels.device) for t in (found.attribute, found.anchor, found.positive, found.negative))
        )
        terms["t"] = region_triplet_loss(out.reps, found)
    loss = loss_fn(terms)
    return loss, _step_stats(loss, terms, triplets, out.logits, labels)


def global_step(
    model: RetrievalModel,
    reps: torch.Tensor,
    sampler: GlobalTripletSampler,
    queries: np.ndarray,
    rng: np.random.Generator,
    loss_fn: StageLoss,
    *,
    negatives: str,
) -> tuple[torch.Tensor, StepStats]:
    """Stage 3: L_G on fixed local features ``reps`` (N, A, D) for triplets drawn around ``queries``, each
    negative chosen by ``negatives`` (train.negatives: random, semihard, hardest) among candidates drawn at random,
    by the current model's distances."""
    t = sampler.sample(queries, rng, negatives=1 if negatives == "random" else NEGATIVE_CANDIDATES)
    attributes = reps.shape[1]
    if len(t) == 0:
        zero = reps.new_zeros(()) + sum(p.sum() * 0.0 for p in model.stage_parameters(3))
        return zero, StepStats(0, 0.0, {"g": 0.0}, 0, np.zeros(attributes, np.int64), np.zeros(attributes, np.int64))
    manipulation = torch.as_tensor(t.manipulation, device=reps.device)
    f_query = model.global_representation(reps[t.query], manipulation)  # (T, r)
    f_pos = model.global_representation(reps[t.positive])
    negative = torch.as_tensor(t.negative, device=reps.device)  # (T,) the first candidate: random
    if t.candidates.shape[1] > 1:
        with torch.no_grad():  # mining only chooses; the loss's gradient flows through the chosen negative
            candidates = torch.as_tensor(t.candidates, device=reps.device)  # (T, K)
            f_cand = model.global_representation(reps[candidates.flatten()]).view(*candidates.shape, -1)  # (T, K, r)
            d_cand = (f_query.unsqueeze(1) - f_cand).norm(dim=2)  # (T, K)
            d_pos = (f_query - f_pos).norm(dim=1)  # (T,)
            column = choose_negatives(d_pos, d_cand, negatives)
            negative = candidates.gather(1, column.unsqueeze(1)).squeeze(1)  # (T,)
    f_neg = model.global_representation(reps[negative])
    terms = {"g": soft_triplet_loss(f_query, f_pos, f_neg)}
    loss = loss_fn(terms)
    return loss, StepStats(
        len(t),
        float(loss.detach()),
        {"g": float(terms["g"].detach())},
        len(t),
        np.zeros(attributes, np.int64),
        np.zeros(attributes, np.int64),
    )


def stage3_movement(before: RetrievalModel, after: RetrievalModel) -> dict[str, float | None] | None:
    """How far stage 3 (L_G) moved what it trains, relative to where it started: |after - before| / |before| for
    w_r, lambda (the positive lambda_a, not its parameter) and, when stage 3 also trains the memory block, M (None
    otherwise). ``before`` is the memory stage's model, ``after`` the final one. None for a model whose plan has
    no stage on the fixed features (the ADDE-style model, variants without global representation learning).
    A w_r that moved by 1e-6 means stage 3 changed nothing retrieval can see."""
    if not any(stage.step == "global" for stage in after.training_plan(after.cfg)):
        return None

    def relative(start: torch.Tensor, end: torch.Tensor) -> float:
        return float((end.detach() - start.detach()).norm() / start.detach().norm())

    memory_trained = any(p is after.memory.table for p in after.stage_parameters(3))
    return {
        "w_r": relative(before.global_rep.w_r, after.global_rep.w_r),
        "lambda": relative(before.global_rep.lambdas, after.global_rep.lambdas),
        "memory": relative(before.memory.table, after.memory.table) if memory_trained else None,
    }


def manipulation_step(
    net: torch.nn.Module,
    model: AttributeDrivenNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: StageLoss,
    generator: torch.Generator | None = None,
    from_trunk: bool = False,
) -> tuple[torch.Tensor, StepStats]:
    """The ADDE-style model's stage 3 on one batch: chunk classification (c), the soft triplet of the manipulated
    anchor feature f + M i against a positive with the target values and a negative (t), classification of the
    manipulated feature's chunks as the target values (m), memory consistency (l1), off-diagonal penalty (off).
    ``net`` may be DDP-wrapped; ``model`` is the module inside it (its memory and classifiers are used directly)."""
    out = net(images, from_trunk=from_trunk)
    reps = out.reps  # (B, A, D)
    b, a, d = reps.shape
    features = reps.flatten(1)  # (B, A * D)
    found = manipulation_triplets(labels.cpu(), generator)
    anchor, positive, negative = (t.to(labels.device) for t in (found.anchor, found.positive, found.negative))
    indicator = model.memory.indicator(labels[anchor].long(), found.manipulation.to(labels.device))  # (T, C)
    manipulated = model.memory.manipulate(features[anchor], indicator)  # (T, A * D)
    compute = {  # only the terms the stage weighs are computed
        "c": lambda: attribute_cross_entropy(out.logits, labels, loss_fn.label_smoothing),
        "t": lambda: soft_triplet_loss(manipulated, features[positive], features[negative]),
        "m": lambda: (
            attribute_cross_entropy(model.chunk_logits(manipulated.view(-1, a, d)), labels[positive])
            if len(found)
            else manipulated.sum() * 0.0
        ),
        "l1": lambda: memory_consistency_loss(model.memory.compose(labels).view(b, a, d), reps, labels >= 0),
        "off": lambda: off_diagonal_penalty(model.memory.off_diagonal()),
    }
    terms = {k: f() for k, f in compute.items() if loss_fn.needs(k)}
    loss = (
        loss_fn(terms) + model.memory.weight.sum() * 0.0
    )  # every step reaches the memory, so DDP reduces it every step
    return loss, _step_stats(loss, terms, len(found), out.logits, labels)


def image_step(
    kind: str,
    net: torch.nn.Module,
    model: RetrievalModel,
    images: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: StageLoss,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator | None = None,
    from_trunk: bool = False,
) -> StepStats:
    """One optimiser step of a stage on images, of the plan's step ``kind`` ("manipulation": the ADDE-style model's
    stage 3, else stages 1-2's local step): the loss, its backward pass and the update. ``net`` may be DDP-wrapped;
    ``images`` (B, C, H, W) are made channels-last, as ``in_training_layout`` makes the model."""
    images = images.contiguous(memory_format=torch.channels_last)
    if kind == "manipulation":
        loss, stats = manipulation_step(net, model, images, labels, loss_fn, generator, from_trunk=from_trunk)
    else:
        loss, stats = local_step(net, images, labels, loss_fn, generator, from_trunk=from_trunk)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return stats


def _step_stats(
    loss: torch.Tensor, terms: dict[str, torch.Tensor], triplets: int, logits: list[torch.Tensor], labels: torch.Tensor
) -> StepStats:
    """A step's figures: loss and terms, triplets, and the classifiers' hits on the known labels."""
    with torch.no_grad():
        predicted = torch.stack([lg.argmax(dim=1) for lg in logits], dim=1)
        known = labels >= 0
        correct = ((predicted == labels.long()) & known).sum(dim=0)
    return StepStats(
        images=len(labels),
        loss=float(loss.detach()),
        terms={k: float(v.detach()) for k, v in terms.items()},
        triplets=triplets,
        correct=correct.cpu().numpy(),
        known=known.sum(dim=0).cpu().numpy(),
    )


@dataclass
class EpochMeter:
    """Sums of a worker's steps; ``totals`` is what workers all-reduce before reporting."""

    attributes: int
    steps: int = 0
    images: int = 0
    triplets: int = 0
    loss: float = 0.0
    terms: dict[str, float] = field(default_factory=dict)
    correct: np.ndarray | None = None
    known: np.ndarray | None = None

    def add(self, s: StepStats) -> None:
        self.steps += 1
        self.images += s.images
        self.triplets += s.triplets
        self.loss += s.loss
        for k, v in s.terms.items():
            self.terms[k] = self.terms.get(k, 0.0) + v
        self.correct = s.correct if self.correct is None else self.correct + s.correct
        self.known = s.known if self.known is None else self.known + s.known

    def totals(self, term_names: list[str]) -> torch.Tensor:
        """[steps, images, triplets, loss, *terms, *correct, *known] as float64 for all_reduce."""
        correct = self.correct if self.correct is not None else np.zeros(self.attributes)
        known = self.known if self.known is not None else np.zeros(self.attributes)
        values = [
            self.steps,
            self.images,
            self.triplets,
            self.loss,
            *(self.terms.get(t, 0.0) for t in term_names),
            *correct,
            *known,
        ]
        return torch.tensor(values, dtype=torch.float64)


def epoch_metrics(
    totals: torch.Tensor, term_names: list[str], attribute_names: list[str], seconds: float
) -> dict[str, float]:
    """All-reduced totals -> the metrics reported for an epoch (means per step, accuracy per attribute)."""
    v = totals.tolist()
    steps, images, triplets, loss = v[:4]
    terms = v[4 : 4 + len(term_names)]
    a = len(attribute_names)
    correct, known = v[4 + len(term_names) : 4 + len(term_names) + a], v[4 + len(term_names) + a :]
    steps = max(steps, 1)
    metrics = {
        "loss": loss / steps,
        "images": images,
        "images_per_s": images / max(seconds, 1e-9),
        "triplets_per_step": triplets / steps,
    }
    metrics.update({f"loss_{t}": x / steps for t, x in zip(term_names, terms)})
    metrics.update({f"acc_{n}": c / k for n, c, k in zip(attribute_names, correct, known) if k > 0})
    return metrics
