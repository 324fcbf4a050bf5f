"""The order fsnet ablation trains its methods in comes from the variants' registry (no list of names of its own)."""

from itertools import permutations

from fsnet.model import VARIANTS
from jobs.ablation import ADDE, run_order, shares


def reused(order: list[str]) -> int:
    """The stages an ablation in this order takes from earlier runs: each method from its best donor done before."""
    return sum(max((len(shares(d, m)) for d in order[:at]), default=0) for at, m in enumerate(order))


def test_the_order_shares_as_many_stages_as_any_order():
    methods = [ADDE, *VARIANTS]
    order = run_order(methods)
    assert sorted(order) == sorted(methods) and order[-1] == ADDE
    assert reused(order) == max(reused(list(p)) for p in permutations(methods))
    assert order[:3] == ["full", "rank_lg", "rank_l"]  # full trains the most of the three that share stages 1-2


def test_a_subset_keeps_the_same_rule():
    assert run_order(["rank_l", "full"]) == ["full", "rank_l"]
    assert run_order(["wo_rank", ADDE, "rank"]) == ["rank", "wo_rank", ADDE]
