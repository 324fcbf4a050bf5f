"""The one place losses are weighed: L = lambda_C L_C + lambda_T L_T + lambda_TC L_TC + lambda_G L_G (paper Eq. 9)
with the stage's lambdas from the config (stage 1 (1, 0, 0, 0), stage 2 (1, 1.5, 1, 0), stage 3 (0, 0, 0, 1)),
and L_T switched off for the variants without ranking ("w/o Rank"). The ADDE-style model (no variant) adds
lambda_M (classification of manipulated features), lambda_L1 (memory consistency), lambda_OFF (off-diagonal).
The classification terms' label smoothing (train.label_smoothing) is the run's, read by the steps that compute them."""

from __future__ import annotations

import torch

from fsnet.config import StageConfig
from fsnet.model.variants import Variant

TERMS = ("c", "t", "tc", "g", "m", "l1", "off")


class StageLoss:
    def __init__(self, stage: StageConfig, variant: Variant | None, label_smoothing: float = 0.0):
        """``variant`` None: a model without FashionSearchNet's switches, every term as configured;
        ``label_smoothing``: of the classifiers' cross-entropy terms (c, tc), 0 for none."""
        self.label_smoothing = label_smoothing
        self.weights = {
            "c": stage.lambda_c,
            "t": stage.lambda_t if variant is None or variant.ranking else 0.0,
            "tc": stage.lambda_tc,
            "g": stage.lambda_g if variant is None or variant.global_learning else 0.0,
            "m": stage.lambda_m,
            "l1": stage.lambda_l1,
            "off": stage.lambda_off,
        }

    def needs(self, term: str) -> bool:
        """Whether a term has weight: the training step computes only those."""
        return self.weights[term] > 0

    def __call__(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        missing = [t for t in TERMS if self.needs(t) and t not in terms]
        if missing:
            raise ValueError(f"stage loss needs the terms {missing}")
        return sum(self.weights[t] * terms[t] for t in TERMS if self.needs(t))  # type: ignore[return-value]
