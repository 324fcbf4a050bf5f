"""What every retrieval model returns: ``forward`` gives TrainOutputs (what the training steps' losses read),
``embed`` gives an Embedding (what the index stores per image). Both models build on these, not on each other."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class TrainOutputs:
    """One training pass."""

    logits: list[torch.Tensor]  # GAP classifier logits per attribute, (B, V_a) each (L_C)
    reps: torch.Tensor | None  # (B, A, D) attribute representations fc10_a (L_T); None without heads
    rep_logits: list[torch.Tensor]  # classifiers on fc10_a, (B, V_a) each (L_TC)
    boxes: torch.Tensor | None  # (B, A, 4) in conv5 cells


@dataclass
class Embedding:
    """What the index stores per image."""

    reps: torch.Tensor  # (B, A, D)
    predicted: torch.Tensor  # (B, A) int64: the value of highest probability per attribute
    probabilities: torch.Tensor  # (B, C) softmax of each attribute's logits, concatenated in schema order
    boxes: torch.Tensor  # (B, A, 4) in conv5 cells
    map_size: tuple[int, int]  # (H, W) of conv5, to turn boxes into pixels

    @classmethod
    def of(
        cls, reps: torch.Tensor, logits: list[torch.Tensor], boxes: torch.Tensor, map_size: tuple[int, int]
    ) -> "Embedding":
        """From the representations and each attribute's logits (B, V_a): predictions and probabilities as every
        model derives them."""
        probabilities = torch.cat([lg.float().softmax(dim=1) for lg in logits], dim=1)  # (B, C)
        predicted = torch.stack([lg.argmax(dim=1) for lg in logits], dim=1)  # (B, A)
        return cls(reps=reps, predicted=predicted, probabilities=probabilities, boxes=boxes, map_size=map_size)
