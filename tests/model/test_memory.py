"""Memory build, manipulation math and the linearity the evaluation relies on."""

import pytest
import torch
from torch.testing import assert_close

from fsnet.model import build_model
from fsnet.model.memory import ExactValueSums, MemoryBlock, value_sums
from tests.model.helpers import SCHEMA_3, model_config


def test_memory_rows_are_means_of_known_values():
    num_values = [3, 2]
    reps = torch.arange(4 * 2 * 2, dtype=torch.float32).view(4, 2, 2)
    labels = torch.tensor([[0, 1], [0, -1], [2, 1], [-1, 0]])
    sums, counts = value_sums(reps, labels, num_values)
    memory = MemoryBlock(num_values, 2, updatable=False)
    memory.set_means(sums, counts)
    assert counts.tolist() == [2, 0, 1, 1, 2]
    assert_close(memory.row(0, 0), (reps[0, 0] + reps[1, 0]) / 2)
    assert_close(memory.row(0, 1), torch.zeros(2))  # no training image has it
    assert_close(memory.row(0, 2), reps[2, 0])
    assert_close(memory.row(1, 0), reps[3, 1])
    assert_close(memory.row(1, 1), (reps[0, 1] + reps[2, 1]) / 2)
    assert_close(memory.rows(1), torch.stack([memory.row(1, 0), memory.row(1, 1)]))


def test_exact_sums_are_the_same_in_any_order_and_batching():
    """The memory job adds rows in the order the embed pool returns them: the same rows in another order and other
    batches give the same M to the bit (float sums do not), and the sums equal float64 sums to float32 precision."""
    torch.manual_seed(0)
    num_values = [3, 4]
    reps, labels = torch.randn(600, 2, 8) * 5, torch.randint(-1, 3, (600, 2))

    def means(order: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        exact, floats = ExactValueSums(num_values, 8), None
        for rows in order.split(batch):
            exact.add(reps[rows], labels[rows])
            s, _ = value_sums(reps[rows], labels[rows], num_values)
            floats = s if floats is None else floats + s
        memory = MemoryBlock(num_values, 8, updatable=False)
        memory.set_means(*exact.totals())
        return memory.table.clone(), floats

    first, first_floats = means(torch.arange(600), 600)
    second, second_floats = means(torch.randperm(600), 37)
    assert torch.equal(first, second)
    assert not torch.equal(first_floats, second_floats)  # what the job summed before
    sums, counts = value_sums(reps.double(), labels, num_values)
    assert_close(first, (sums / counts.clamp(min=1).unsqueeze(1)).float(), rtol=1e-6, atol=1e-6)


def test_exact_sums_refuse_values_they_cannot_hold():
    sums = ExactValueSums([2], 1)
    sums.add(torch.full((2, 1, 1), 1e6), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"too large to sum exactly: \|value\| up to 1e\+12 over 3 rows"):
        sums.add(torch.full((1, 1, 1), 1e12), torch.zeros(1, 1, dtype=torch.long))


def test_sums_add_across_batches():
    num_values = [3, 4]
    reps, labels = torch.randn(10, 2, 5), torch.randint(-1, 3, (10, 2))
    whole = value_sums(reps, labels, num_values)
    halves = [value_sums(reps[s], labels[s], num_values) for s in (slice(0, 4), slice(4, 10))]
    assert_close(whole[0], halves[0][0] + halves[1][0])
    assert torch.equal(whole[1], halves[0][1] + halves[1][1])


def test_manipulate_one_and_several_attributes():
    memory = MemoryBlock([2, 3], 2, updatable=True)
    memory.set_means(torch.arange(10, dtype=torch.float32).view(5, 2), torch.ones(5, dtype=torch.long))
    assert isinstance(memory.table, torch.nn.Parameter)
    reps = torch.full((2, 2, 2), -1.0)
    out = memory.manipulate(reps, torch.tensor([[1, -1], [0, 2]]))
    assert out[0].tolist() == [[2.0, 3.0], [-1.0, -1.0]]  # attribute 0 -> value 1; attribute 1 kept
    assert out[1].tolist() == [[0.0, 1.0], [8.0, 9.0]]  # both changed
    assert not isinstance(MemoryBlock([2], 2, updatable=False).table, torch.nn.Parameter)


@pytest.mark.parametrize("variant", ["rank_l", "full"])
def test_global_representation_is_linear_in_each_slot(variant):
    torch.manual_seed(0)
    model = build_model(model_config(f"model.variant={variant}"), SCHEMA_3).eval()
    reps = torch.randn(4, 3, model.cfg.embed_dim)
    labels = torch.randint(0, 2, (20, 3))
    model.memory.set_means(*value_sums(torch.randn(20, 3, model.cfg.embed_dim), labels, SCHEMA_3.num_values))
    lambdas, blocks = model.global_rep.lambdas, model.global_rep.blocks()
    base = model.global_representation(reps)
    assert_close(base, sum(lambdas[a] * reps[:, a] @ blocks[a] for a in range(3)))
    for a, v in [(0, 2), (1, 4), (2, 1)]:
        manipulation = torch.full((4, 3), -1)
        manipulation[:, a] = v
        moved = model.global_representation(reps, manipulation)
        # F(q, a -> v) - F(q) = lambda_a (M[a, v] - s_a(q)) W_a
        assert_close(moved - base, lambdas[a] * (model.memory.row(a, v) - reps[:, a]) @ blocks[a], rtol=1e-4, atol=1e-5)
