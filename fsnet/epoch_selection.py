"""Which epoch of a stage is kept: the one with the best validation figure of the stage's metric.

A stage scores every epoch on the validation images (jobs/train.py ``Worker.select``): stage 1 by classifier
accuracy, later stages by validation Top-20. Where the validation images are few, Top-20 saturates (every
manipulation finds its target among a small validation gallery) and many epochs tie at 1.0; the first of them
would then be kept and the rest of the stage thrown away. Ties are broken by the validation classifier accuracy,
which those stages record too, and a tie on both keeps the later epoch, the one further along its schedule.
"""

from __future__ import annotations

import math

TIE_BREAK = "val_accuracy"


def selection_key(figures: dict[str, float], metric: str) -> tuple[float, float]:
    """(the stage's metric, the tie-breaking accuracy) of one epoch's validation figures; -inf where missing."""
    return figures.get(metric, -math.inf), figures.get(TIE_BREAK, -math.inf)


def better_epoch(figures: dict[str, float], best: dict[str, float] | None, metric: str) -> bool:
    """Whether an epoch with ``figures`` replaces the ``best`` one kept so far (None: nothing kept yet). An epoch
    without the metric is never kept."""
    if metric not in figures:
        return False
    return best is None or selection_key(figures, metric) >= selection_key(best, metric)
