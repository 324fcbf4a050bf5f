"""MaskDropout: nn.Dropout's computation with a faster mask on a CPU: the rate of zeros, the scale of the rest, eval
mode and a zero rate leave the input as it is, and torch's global seed repeats the mask."""

import pytest
import torch
from torch import nn

from fsnet.model.mask_dropout import MaskDropout


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_zeros_at_the_rate_and_the_rest_scaled_as_nn_dropout(p):
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 0.5  # no zero of its own
    out = MaskDropout(p).train()(x)
    dropped = out == 0
    assert float(dropped.float().mean()) == pytest.approx(p, abs=0.003)  # 1 M draws: a standard error below 0.0005
    torch.testing.assert_close(out[~dropped], x[~dropped] / (1 - p))
    reference = nn.Dropout(p).train()(x)  # torch's own: the same values where it keeps one
    kept = reference != 0
    torch.testing.assert_close(reference[kept], x[kept] / (1 - p))
    assert float(out.mean()) == pytest.approx(float(x.mean()), rel=0.01)  # the expectation kept


def test_eval_mode_and_a_zero_rate_pass_the_input_through():
    x = torch.randn(4, 7, 16)
    assert MaskDropout(0.5).eval()(x) is x
    assert MaskDropout(0.0).train()(x) is x


def test_the_global_seed_repeats_the_mask_and_gradients_follow_it():
    x = torch.randn(8, 3, 32, requires_grad=True)
    dropout = MaskDropout(0.5).train()
    torch.manual_seed(7)
    first = dropout(x)
    torch.manual_seed(7)
    second = dropout(x)
    assert torch.equal(first, second) and not torch.equal(first, dropout(x))
    first.sum().backward()
    torch.testing.assert_close(x.grad, (first != 0).float() * 2.0)  # d(x * mask * 2)/dx


def test_a_rate_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="dropout rate"):
        MaskDropout(1.0)
