"""eval/comparison.py without a command line: the unpaired comparison the re-index gate makes when the catalog's
gallery changed between two versions, and the pairing a comparison refuses."""

import json

import numpy as np
import pytest

from eval.comparison import ComparisonError, Side, compare
from eval.outcomes import Outcomes
from eval.results import read_results
from tests.eval.test_results import results_dict


def outcomes(seed: int, queries: int, hit_rate: float) -> Outcomes:
    """4 manipulations per query in two groups; a hit at 20 with probability ``hit_rate``."""
    rng = np.random.default_rng(seed)
    m = queries * 4
    rank = np.where(rng.random(m) < hit_rate, rng.integers(0, 20, m), 50)
    return Outcomes(
        query=np.repeat([f"q{i}" for i in range(queries)], 4),
        group=np.tile(["color", "sleeve"], m // 2),
        ranks={"full": rank},
        k_max=50,
    )


def evaluation(gallery: str):
    data = results_dict()
    data["dataset"]["fingerprint"] = {"queries": "01", "gallery": gallery, "manipulations": "03"}
    return read_results(json.dumps(data), "results.json")


def test_other_galleries_compare_only_unpaired():
    old = Side("old", evaluation("aa"), outcomes(0, 400, 0.5), "full")
    new = Side("new", evaluation("bb"), outcomes(1, 300, 0.3), "full")
    with pytest.raises(ComparisonError, match="other gallery images"):
        compare(old, new)
    c = compare(old, new, resamples=400, unpaired=True, ks=(20,))
    f = c.figure(20)
    assert c.pairing == "unpaired" and f.new - f.base == pytest.approx(f.difference)
    assert f.low < f.difference < f.high < 0 and f.share_not_above == 1.0  # about -0.2, told apart
    assert {"color", "sleeve", "average"} == set(c.top_k["top_20"])


def test_an_unpaired_comparison_of_equal_rates_straddles_zero():
    old = Side("old", evaluation("aa"), outcomes(0, 300, 0.5), "full")
    new = Side("new", evaluation("bb"), outcomes(1, 300, 0.5), "full")
    f = compare(old, new, resamples=400, unpaired=True, ks=(20,)).figure(20)
    assert f.low < 0 < f.high
