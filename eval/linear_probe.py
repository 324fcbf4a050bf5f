"""The linear probe: one multinomial logistic regression per attribute on frozen image features (the pooled trunk
features of eval/probe.py), the yardstick a trained model's classifiers and rankings must beat.

Features are standardised with the fit images' mean and spread. For each attribute, the inverse L2 strengths of
``probe.regularization`` are fitted in increasing order (each warm-started from the previous one: weaker
regularisation continues from a stronger one's solution) and the one with the best accuracy on the validation
images is kept as fitted (not refitted with the validation images: what was chosen is what is scored); ties keep
the stronger regularisation. Unknown labels (< 0) are skipped in the fit and in every accuracy. scikit-learn's
lbfgs solver: exact and well kept, so the yardstick's quality is not a property of our own optimiser.
"""

from __future__ import annotations

import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from fsnet.errors import FsnetError

MAX_ITER = 100  # lbfgs iterations per strength; warm starts make later strengths cheap; on features of real product
# photos the accuracy settles well within it
TOL = 1e-4  # lbfgs gradient tolerance (scikit-learn's default; its loss is a per-image mean): 1e-3 stops warm starts
# before they move at all
BLAS_THREADS = 1  # the fit's products are small (images x features x values): a second BLAS thread gains little, and
# on a busy machine a spinning OpenBLAS thread made a fit several times slower (docs/experiments.md)
SCALE_FLOOR = 1e-6  # a feature constant over the fit images (a dead channel) is centred, not blown up


class ProbeUnavailable(FsnetError):
    """The probe cannot be fitted (no labelled training image for an attribute, no features): one line says why."""


@dataclass
class LinearProbe:
    """Per attribute a softmax over its values (the model's codes) of a linear map of the standardised features.
    Values no fit image has get probability 0."""

    names: list[str]
    mean: np.ndarray  # (F,) of the fit images' features
    scale: np.ndarray  # (F,)
    weights: list[np.ndarray]  # per attribute (V_a, F), one row per value
    biases: list[np.ndarray]  # per attribute (V_a,), -inf for values no fit image has
    strengths: list[float | None]  # per attribute: the inverse L2 strength kept (None: one value seen, a constant)
    validation_accuracy: list[float | None]  # per attribute, of the strength kept (None: no labelled validation image)
    fit_images: int  # images fitted on (labelled or not)
    validation_images: int
    seconds: float

    def logits(self, features: np.ndarray, attribute: int) -> np.ndarray:
        x = (features.astype(np.float32) - self.mean) / self.scale  # (N, F)
        return x @ self.weights[attribute].T + self.biases[attribute]  # (N, V_a)

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(N, F) -> (N, C) each attribute's softmax, concatenated in attribute order (as the index stores them)."""
        out = []
        for a in range(len(self.names)):
            z = self.logits(features, a)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            out.append(z / z.sum(axis=1, keepdims=True))
        return np.concatenate(out, axis=1).astype(np.float32) if out else np.zeros((len(features), 0), np.float32)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """(N, F) -> (N, A) the most probable value of each attribute."""
        columns = [self.logits(features, a).argmax(axis=1) for a in range(len(self.names))]
        return np.stack(columns, axis=1).astype(np.int64) if columns else np.zeros((len(features), 0), np.int64)


def accuracy(predicted: np.ndarray, labels: np.ndarray) -> list[float | None]:
    """Per attribute, the fraction of known labels (>= 0) predicted; None where no label is known."""
    out: list[float | None] = []
    for a in range(labels.shape[1]):
        known = labels[:, a] >= 0
        out.append(float((predicted[known, a] == labels[known, a]).mean()) if known.any() else None)
    return out


def fit_linear_probe(
    features: np.ndarray,
    labels: np.ndarray,
    validation_features: np.ndarray,
    validation_labels: np.ndarray,
    names: list[str],
    num_values: list[int],
    strengths: list[float],
    threads: int | None = None,
) -> LinearProbe:
    """features (n, F) and labels (n, A) of the fit images, the same of the validation images -> the probe.
    ProbeUnavailable when there is nothing to fit on, or an attribute has no known label among the fit images.
    ``threads`` attributes are fitted at once (default: one per CPU): lbfgs's matrix products and
    scikit-learn's loss release the GIL, and each fit is its own, so the probe is the same for any count."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    if not len(features):
        raise ProbeUnavailable("probe: no training image has trunk features (the training split less the validation)")
    mean = features.mean(axis=0).astype(np.float32)
    scale = features.std(axis=0).astype(np.float32)
    scale[scale < SCALE_FLOOR] = 1.0
    x = (features.astype(np.float32) - mean) / scale  # (n, F) standardised
    xv = (validation_features.astype(np.float32) - mean) / scale  # (m, F)
    for a, name in enumerate(names):
        if not (labels[:, a] >= 0).any():
            raise ProbeUnavailable(f"probe: no training image has a label for '{name}': nothing to fit it on")

    def fit(a: int) -> tuple[np.ndarray, np.ndarray, float | None, float | None]:
        known, vknown = labels[:, a] >= 0, validation_labels[:, a] >= 0
        return _fit_attribute(
            x[known], labels[known, a], xv[vknown], validation_labels[vknown, a], num_values[a], strengths
        )

    workers = max(1, min(len(names), threads or os.cpu_count() or 1))  # sched_getaffinity is Linux-only: laptops
    with threadpool_limits(BLAS_THREADS, user_api="blas"), warnings.catch_warnings():
        # MAX_ITER is a budget: a strength stopped by it is still a valid (slightly less regularised-to-the-end) fit
        warnings.simplefilter("ignore", ConvergenceWarning)
        # a small catalog's attribute may have more values than half its fit images: fitted all the same
        warnings.filterwarnings("ignore", "The number of unique classes is greater than 50%", UserWarning)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            fitted = list(pool.map(fit, range(len(names))))  # per attribute (weights, biases, strength, accuracy)
    return LinearProbe(
        names=list(names),
        mean=mean,
        scale=scale,
        weights=[f[0] for f in fitted],
        biases=[f[1] for f in fitted],
        strengths=[f[2] for f in fitted],
        validation_accuracy=[f[3] for f in fitted],
        fit_images=len(features),
        validation_images=len(validation_features),
        seconds=time.perf_counter() - start,
    )


def _fit_attribute(
    x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, values: int, strengths: list[float]
) -> tuple[np.ndarray, np.ndarray, float | None, float | None]:
    """One attribute's (weights (V, F), biases (V,), strength kept, its validation accuracy)."""
    from sklearn.linear_model import LogisticRegression

    seen = np.unique(y)  # (K,) values the fit images have, increasing: the classifier's classes
    weight = np.zeros((values, x.shape[1]), np.float32)
    bias = np.full(values, -np.inf, np.float32)
    if len(seen) == 1:  # one value: always it (logistic regression needs two classes)
        bias[seen[0]] = 0.0
        return weight, bias, None, _accuracy(np.full(len(yv), seen[0]), yv)
    order = sorted(strengths)
    if not len(yv):  # nothing to choose with: the middle of the strengths tried
        order = [order[len(order) // 2]]
    model = LogisticRegression(C=order[0], max_iter=MAX_ITER, tol=TOL, warm_start=True)
    best: tuple | None = None  # (validation accuracy, C, coef (K or 1, F), intercept (K or 1,))
    for c in order:
        model.C = c
        model.fit(x, y)
        score = _accuracy(model.predict(xv), yv) if len(yv) else None
        if best is None or (score is not None and score > best[0]):  # a tie keeps the stronger regularisation
            best = (score, c, model.coef_.copy(), model.intercept_.copy())
    score, c, coef, intercept = best
    if len(seen) == 2:  # binary: one vector for the second class; as a softmax, [0, z]
        coef, intercept = np.concatenate([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight[seen], bias[seen] = coef, intercept  # (K, F), (K,) into the attribute's value rows
    return weight, bias, c, score


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> float | None:
    return float((predicted == labels).mean()) if len(labels) else None


def mean_accuracy(per_attribute: list[float | None]) -> float | None:
    """The mean over the attributes that have an accuracy; None when none has."""
    present = [x for x in per_attribute if x is not None]
    return float(np.mean(present)) if present else None
