"""What fsnet ablation lets variants share (jobs/ablation.py ``shares``), and why stage 1 may be shared by all:
the parameters stage 1 trains are the same modules, seeded the same, in every variant."""

import torch

from fsnet.model import VARIANTS, build_model
from jobs.ablation import shares
from tests.model.helpers import SCHEMA_5, model_config


def test_stage_one_is_shared_by_every_variant_and_stage_two_by_the_same_heads():
    assert shares("full", "full_ff") == ["stage1"]  # fusion changes the heads, which stage 1 does not train
    assert shares("full", "wo_rank") == ["stage1"]
    assert shares("full", "rank_lg") == ["stage1", "stage2", "memory"]
    assert shares("full", "adde") == [] and shares("adde", "full") == []  # another network


def test_stage_one_trains_the_same_seeded_parameters_in_every_variant():
    def stage_one(variant: str) -> list[torch.Tensor]:
        torch.manual_seed(0)  # as transplant and the first stage seed it (train.seed)
        return [
            p.detach().clone()
            for p in build_model(model_config(f"model.variant={variant}"), SCHEMA_5).stage_parameters(1)
        ]

    full = stage_one("full")
    for variant in VARIANTS:
        params = stage_one(variant)
        assert len(params) == len(full), variant
        for a, b in zip(params, full):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=variant)
