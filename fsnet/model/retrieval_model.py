"""What every retrieval model offers the jobs, written down: ``index``, ``evaluate``, ``search``, ``explain`` and
``train`` call only this, never a model class by name. FashionSearchNet (fsnet.py) and the ADDE-style model
(adde.py) both satisfy it; a new model is a file that does too, plus its line in registry.py.

The manipulation algebra (eval/algebra.py) is chosen by ``manipulation``: "replace" (a manipulated attribute's
slot is swapped for a memory row, FashionSearchNet) or "additive" (a difference of memory prototypes is added,
ADDE); ``global_representation`` is the model's own computation of the same F', which tests/eval/test_algebra.py
holds the algebra to."""

from __future__ import annotations

from typing import Any, Iterator, Protocol

import torch
from torch import nn

from fsnet.catalog.schema import AttributeSchema
from fsnet.config import ModelConfig
from fsnet.model.outputs import Embedding, TrainOutputs
from fsnet.model.probe_expert import ProbeExpert
from fsnet.model.training_plan import Stage
from fsnet.model.variants import Variant


class ValueMemory(Protocol):
    """The memory block: one prototype per attribute value, set in the memory stage from the mean features."""

    num_values: list[int]
    counts: torch.Tensor  # (C,) training images per value

    @property
    def table(self) -> torch.Tensor: ...  # (C, w) one row per value, schema order

    def set_means(self, sums: torch.Tensor, counts: torch.Tensor) -> None: ...  # sums (C, D), counts (C,)


class RetrievalModel(Protocol):
    kind: str  # model.kind, its key in registry.py
    manipulation: str  # the manipulation algebra (eval/algebra.py): "replace" or "additive"
    cfg: ModelConfig
    schema: AttributeSchema
    variant: Variant | None  # FashionSearchNet's ablation switches (the stage losses read them); None: every term
    memory: ValueMemory
    probe_expert: ProbeExpert | None  # the pretrained trunk's probe joined to the classifiers (probe_expert.py)

    @property
    def method(self) -> str: ...  # the name results and reports give this model

    @property
    def global_dim(self) -> int: ...  # r, the width of the global representation the index holds

    @classmethod
    def training_plan(cls, cfg: ModelConfig) -> list[Stage]: ...  # the stages train() runs, in order

    def forward(self, images: torch.Tensor, heads: bool = True) -> TrainOutputs: ...  # one training pass

    # what the index stores (eval mode, no grad); from_trunk: images are the frozen trunk's maps
    def embed(self, images: torch.Tensor, from_trunk: bool = False) -> Embedding: ...

    def global_representation(
        self, reps: torch.Tensor, manipulation: torch.Tensor | None = None, values: torch.Tensor | None = None
    ) -> torch.Tensor: ...  # reps (B, A, D), manipulation (B, A; new value or -1), values (B, A) -> F' (B, r)

    def stage_parameters(self, stage: int) -> list[nn.Parameter]: ...  # what stage ``number`` updates

    def attention(self, images: torch.Tensor, attribute: int) -> tuple[torch.Tensor, list[float]] | None:
        """The attribute's activation map (H, W) and box in conv5 cells of one image (1, 3, S, S), for the
        explanation; None for a model without localization."""
        ...

    def summary_figures(self) -> dict[str, Any]: ...  # model-specific figures for train_summary.json

    # torch.nn.Module's, which the jobs use as they are
    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any], strict: bool = True, assign: bool = False) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> "RetrievalModel": ...

    def train(self, mode: bool = True) -> "RetrievalModel": ...

    def eval(self) -> "RetrievalModel": ...
