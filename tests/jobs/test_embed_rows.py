"""jobs/embed_rows.py: GPUs per embed actor, so that a pool of index.actors fits the cluster's GPUs."""

from __future__ import annotations

import math

import pytest

from jobs.embed_rows import gpus_per_actor


@pytest.mark.parametrize(
    "gpus, actors, each",
    [(0, 3, 0), (1, 1, 1), (4, 1, 1), (2, 2, 1), (1, 2, 0.5), (2, 3, 0.5), (2, 4, 0.5), (1, 3, 1 / 3), (8, 24, 1 / 3)],
)
def test_actors_beyond_the_gpus_share_them_and_fit(gpus, actors, each):
    assert gpus_per_actor(gpus, actors) == pytest.approx(each)
    if gpus:  # Ray places whole shares on each GPU: the pool must fit
        assert gpus * math.floor(1 / gpus_per_actor(gpus, actors) + 1e-9) >= actors
