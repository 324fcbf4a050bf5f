"""train.schedule: each parameter group's rate as a function of (epoch, step) within a stage."""

import math

import pytest
import torch

from fsnet.lr_schedule import StageSchedule, lr_factor


def optimizer():
    fast, slow = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    return torch.optim.SGD([{"params": [fast], "lr": 0.01}, {"params": [slow], "lr": 0.001}], lr=0.01)


def test_constant_keeps_every_rate():
    opt = optimizer()
    schedule = StageSchedule(opt, "constant", epochs=3, steps_per_epoch=5)
    for epoch, step in [(0, 0), (1, 2), (2, 4)]:
        assert schedule.set(epoch, step) == 1.0
        assert [g["lr"] for g in opt.param_groups] == [0.01, 0.001]


def test_cosine_anneals_each_group_from_its_start_towards_zero():
    opt = optimizer()
    schedule = StageSchedule(opt, "cosine", epochs=2, steps_per_epoch=4)  # 8 steps
    assert schedule.set(0, 0) == 1.0 and [g["lr"] for g in opt.param_groups] == [0.01, 0.001]
    assert schedule.set(1, 0) == pytest.approx(0.5)  # halfway: half the rate, the tuned group's fraction kept
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.005, 0.0005])
    last = schedule.set(1, 3)  # the stage's last step: 7 of 8 done
    assert last == pytest.approx(0.5 * (1 + math.cos(math.pi * 7 / 8))) and 0 < last < 0.04
    factors = [schedule.set(e, s) for e in range(2) for s in range(4)]
    assert all(a > b for a, b in zip(factors, factors[1:]))  # falls at every step


def test_a_resumed_stage_continues_on_the_same_curve():
    """The rate depends on (epoch, step) only: a schedule built on a restored optimizer (whose groups hold the last
    rates) must not take those as its start; it is built before the restore."""
    first = optimizer()
    schedule = StageSchedule(first, "cosine", epochs=3, steps_per_epoch=2)
    schedule.set(1, 1)
    restored = optimizer()
    again = StageSchedule(restored, "cosine", epochs=3, steps_per_epoch=2)
    restored.load_state_dict(first.state_dict())  # the checkpoint's rates: half the start (3 of 6 steps done)
    assert again.set(2, 0) == schedule.set(2, 0)
    assert [g["lr"] for g in restored.param_groups] == [g["lr"] for g in first.param_groups]


def test_an_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="'linear'"):
        lr_factor("linear", 0.5)
