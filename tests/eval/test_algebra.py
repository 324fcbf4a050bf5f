"""The evaluator's manipulation algebra against the model's own computation of the same F': for every
FashionSearchNet variant (the learned lambda_a and w_r where the variant has global learning) and for the
ADDE-style model, on tiny randomly initialised models with a random memory, one attribute and several changed at
once. ``fsnet evaluate`` ranks with the algebra (eval/algebra.py) and ``fsnet search`` with
``model.global_representation``: this is what keeps the two the same formula."""

import dataclasses

import numpy as np
import pytest
import torch

from eval.additive_memory import AdditiveMemory
from eval.algebra import algebra_of
from eval.linear_global import LinearGlobal
from fsnet.model import VARIANTS, build_model
from tests.model.helpers import SCHEMA_5, model_config

BATCH = 24
METHODS = [*VARIANTS, "adde"]


def random_model(method: str):
    """A tiny model (no backbone weights) with random lambda_a, w_r and memory: nothing left at 0 or 1 that would
    hide a wrong weight or row."""
    torch.manual_seed(0)
    sets = ["model.kind=adde"] if method == "adde" else ["model.kind=fsn", f"model.variant={method}"]
    model = build_model(model_config(*sets), SCHEMA_5, pretrained=False).eval()
    with torch.no_grad():
        if method == "adde":
            model.memory.weight.copy_(torch.randn_like(model.memory.weight))  # off-diagonal blocks included
        else:
            model.memory.table.copy_(torch.randn_like(model.memory.table))
            if model.global_rep.learned:
                model.global_rep.rho.copy_(torch.randn_like(model.global_rep.rho))
    return model


def manipulations(num_values: list[int], at_once: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(values, change), both (B, A): current values with some unknown (-1); ``at_once`` attributes changed per
    row to a random value (possibly the current one)."""
    rng = np.random.default_rng(seed)
    values = np.stack([rng.integers(-1, v, BATCH) for v in num_values], axis=1)
    change = np.full_like(values, -1)
    for row in range(BATCH):
        for a in rng.choice(len(num_values), at_once, replace=False):
            change[row, a] = rng.integers(0, num_values[a])
    return values, change


def model_f_prime(model, reps: np.ndarray, values: np.ndarray, change: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return (
            model.global_representation(
                torch.from_numpy(reps).float(), torch.from_numpy(change), torch.from_numpy(values)
            )
            .double()
            .numpy()
        )


def algebra_f_prime(algebra, reps: np.ndarray, values: np.ndarray, change: np.ndarray) -> np.ndarray:
    return algebra.manipulated(algebra.global_of(reps), algebra.slots(reps, values), change)


@pytest.mark.parametrize("at_once", [1, 2, 5])
@pytest.mark.parametrize("method", METHODS)
def test_algebra_equals_the_models_global_representation(method, at_once):
    model = random_model(method)
    algebra = algebra_of(model)
    assert isinstance(algebra, AdditiveMemory if method == "adde" else LinearGlobal)
    num_values = model.schema.num_values
    values, change = manipulations(num_values, at_once, seed=at_once)
    reps = np.random.default_rng(7).normal(size=(BATCH, len(num_values), model.cfg.embed_dim))  # (B, A, D) float64
    expected = model_f_prime(model, reps, values, change)  # (B, r), computed in float32
    assert expected.shape == (BATCH, model.global_dim)

    np.testing.assert_allclose(algebra_f_prime(algebra, reps, values, change), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(algebra.long_way(reps, values, change), expected, rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # and without a manipulation, F itself
        plain = model.global_representation(torch.from_numpy(reps).float()).double().numpy()
    np.testing.assert_allclose(algebra.global_of(reps), plain, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["full", "rank", "adde"])
def test_the_comparison_catches_a_wrong_row_or_weight(method):
    """The check above fails for an algebra one memory row off or with another lambda_a."""
    model = random_model(method)
    algebra = algebra_of(model)
    num_values = model.schema.num_values
    values, change = manipulations(num_values, 2, seed=3)
    reps = np.random.default_rng(7).normal(size=(BATCH, len(num_values), model.cfg.embed_dim))
    expected = model_f_prime(model, reps, values, change)
    wrong = [dataclasses.replace(algebra, memory=np.roll(algebra.memory, 1, axis=0))]  # rows off by one
    if isinstance(algebra, LinearGlobal):
        wrong.append(dataclasses.replace(algebra, lambdas=algebra.lambdas * np.array([1, 1, 1.1, 1, 1])))
    for bad in wrong:
        assert not np.allclose(algebra_f_prime(bad, reps, values, change), expected, rtol=1e-4, atol=1e-5)
        assert not np.allclose(bad.long_way(reps, values, change), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "algebra",
    [
        LinearGlobal(np.array([0.5, 2.0]), np.random.default_rng(0).normal(size=(2, 3, 5)), np.ones((5, 3)), [2, 3]),
        LinearGlobal(np.array([0.5, 2.0]), np.random.default_rng(1).normal(size=(2, 3, 2)), np.ones((5, 3)), [2, 3]),
        LinearGlobal(np.array([0.5, 2.0]), None, np.ones((5, 3)), [2, 3]),
        AdditiveMemory(np.ones((5, 6)), [2, 3], 3),
    ],
    ids=["r > D: G W_a^T kept", "r < D: x W_a first", "concatenation", "additive"],
)
def test_gallery_products_into_adds_in_place(algebra):
    """products(a, x, into=acc, alpha=2) is acc + 2 * products(a, x), written into acc (eval/threshold_topk.py
    builds its bounds this way)."""
    rng = np.random.default_rng(2)
    width = algebra.global_of(np.zeros((1, 2, 3))).shape[1]
    products = algebra.gallery_products(torch.from_numpy(rng.normal(size=(7, width)).astype(np.float32)))
    slot = 6 if isinstance(algebra, AdditiveMemory) else 3
    for a in range(2):
        x = rng.normal(size=(4, slot))
        acc = torch.from_numpy(rng.normal(size=(4, 7)).astype(np.float32))
        want = acc + 2 * products(a, x)
        got = products(a, x, into=acc, alpha=2.0)
        assert got.data_ptr() == acc.data_ptr()
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
