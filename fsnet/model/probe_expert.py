"""The pretrained trunk's linear probe as a second expert beside the model's classifiers (train.probe_expert).

Per attribute the model's probabilities and the probe's are joined as a weighted product of experts,
p(v) ∝ p_model(v)^(1-w) p_probe(v)^w, with w chosen on the validation images by their negative log-likelihood
(jobs/probe_expert_fit.py). The probe is eval/linear_probe.py's logistic regression on the pooled maps of the whole
pretrained trunk, its standardisation folded into one linear map; it reads the maps of the trunk's cached blocks
(those a frozen trunk shares with the model) through its own pretrained copy of the blocks the model tuned. The
joined probabilities are what the model predicts: the index stores them, and the fused ranking and the held-out
accuracy read them; the boxes stay the model's own classifiers' (they localize, the probe cannot)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

LOG_FLOOR = math.log(1e-12)  # log-probabilities are clipped here before joining: a value one expert rules out stays
# improbable rather than impossible (and the product has no 0 x -inf)


class ProbeExpert(nn.Module):
    def __init__(self, blocks: nn.Sequential, pooled_channels: int, num_values: list[int], weight: float):
        super().__init__()
        self.blocks = blocks  # pretrained copies of the trunk's tuned blocks: cached maps -> the whole trunk's maps
        self.linear = nn.Linear(pooled_channels, sum(num_values))  # (P) -> (C): every attribute's logits
        self.num_values = list(num_values)
        self.weight = float(weight)  # w: the probe's share of the joined log-probabilities
        self.requires_grad_(False)

    @classmethod
    def fitted(
        cls,
        blocks: nn.Sequential,
        mean: np.ndarray,
        scale: np.ndarray,
        weights: list[np.ndarray],
        biases: list[np.ndarray],
        weight: float,
    ) -> ProbeExpert:
        """From a fitted probe: standardisation ``mean``/``scale`` (P,), per attribute ``weights`` (V_a, P) and
        ``biases`` (V_a,) (-inf for a value no fit image had), folded into one linear map of the raw pooled maps."""
        w = np.concatenate(weights, axis=0) / scale  # (C, P)
        b = np.concatenate(biases) - w @ mean  # (C,)
        expert = cls(blocks, len(mean), [len(x) for x in biases], weight)
        expert.linear.weight.copy_(torch.from_numpy(w.astype(np.float32)))
        expert.linear.bias.copy_(torch.from_numpy(b.astype(np.float32)))
        return expert

    def log_probabilities(self, cached: torch.Tensor) -> list[torch.Tensor]:
        """The cached blocks' maps (B, C, h, w) -> per attribute the probe's log-probabilities (B, V_a)."""
        pooled = self.blocks(cached).float().mean(dim=(2, 3))  # (B, P)
        logits = self.linear(pooled)  # (B, C)
        return [part.log_softmax(dim=1) for part in logits.split(self.num_values, dim=1)]

    def join(self, logits: list[torch.Tensor], cached: torch.Tensor) -> list[torch.Tensor]:
        """The model's logits per attribute (B, V_a) -> the joined experts' unnormalised log-probabilities (B, V_a):
        their softmax is the weighted product of the two experts' probabilities."""
        w = self.weight
        return [
            (1 - w) * lg.float().log_softmax(dim=1).clamp_min(LOG_FLOOR) + w * lp.clamp_min(LOG_FLOOR)
            for lg, lp in zip(logits, self.log_probabilities(cached), strict=True)
        ]


def joined(p_model: np.ndarray, p_probe: np.ndarray, num_values: list[int], weight: float) -> np.ndarray:
    """(N, C) probabilities of each expert -> (N, C) of the weighted product, each attribute normalised: what
    ``ProbeExpert.join`` gives, on probabilities already computed (choosing the weight)."""
    out, start = np.empty_like(p_model), 0
    for v in num_values:
        part = slice(start, start + v)
        logp = (1 - weight) * np.log(np.clip(p_model[:, part], 1e-12, 1)) + weight * np.log(
            np.clip(p_probe[:, part], 1e-12, 1)
        )
        logp -= logp.max(axis=1, keepdims=True)
        e = np.exp(logp)
        out[:, part] = e / e.sum(axis=1, keepdims=True)
        start += v
    return out


def mean_nll(probabilities: np.ndarray, labels: np.ndarray, num_values: list[int]) -> float:
    """Mean over attributes of the mean negative log-likelihood of the known labels (>= 0) under (N, C)
    probabilities; attributes without a known label do not count."""
    per, start = [], 0
    for a, v in enumerate(num_values):
        known = labels[:, a] >= 0
        if known.any():
            p = probabilities[known, start + labels[known, a].astype(np.int64)]
            per.append(float(-np.log(np.clip(p, 1e-12, 1)).mean()))
        start += v
    return float(np.mean(per)) if per else float("nan")
