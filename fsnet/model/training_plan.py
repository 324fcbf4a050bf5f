"""A model's training plan: the stages ``train()`` (jobs/train.py) runs in order, each declared by the model class
(``training_plan(cfg)``), so that a new model brings its own recipe instead of a branch in the job.

A stage says what it trains on (decoded images, the fixed features of the training split, or none: the memory
block set from those features), which config section holds its settings (train.<section>: epochs, lr, the loss
weights) and which training step (fsnet/training.py) it runs. Its name is its file in the run folder
(``<name>.pt``) and its Ray Train run name, so a re-run finds what an earlier one finished."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Data = Literal["images", "features", "memory"]
Step = Literal["local", "manipulation", "global"]


@dataclass(frozen=True)
class Stage:
    name: str  # "stage1", ..., "memory": <name>.pt under the run folder and the Ray Train run name
    number: int  # what stage_parameters, the loss weights' stage, the metrics and train.fault.stage count; 0: memory
    data: Data  # images: decoded training images; features: the fixed features; memory: M from the features
    section: str | None = None  # train.<section> holds its settings: stage1, stage2, stage3, adde; None for memory
    step: Step | None = None  # the training step of each batch (fsnet/training.py); None for memory

    @classmethod
    def memory(cls) -> "Stage":
        """The memory block: fixed features of the training split, then M from them (no optimisation)."""
        return cls(name="memory", number=0, data="memory")
