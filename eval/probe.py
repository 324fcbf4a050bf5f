"""The ``probe`` and ``probe_attributes`` baselines: the yardstick a trained model must beat. The model's pretrained
backbone, frozen, global-average-pooled (the trunk feature cache, fsnet/trunk_features.py), and one multinomial
logistic regression per attribute fitted on the training split less its validation images (eval/linear_probe.py;
the validation images, fsnet/validation.py, choose its regularisation). Then ranked as the model's own classifiers
are ranked by the baselines beside it:

- ``probe``, as ``attr_logp``: the gallery ranked by the log-probability under the probes that an image has the
  manipulated value and shares the query's other values (eval/attr_logp.py);
- ``probe_attributes``, as ``attribute_only``: gallery images by how many target values their probe predictions
  match, ties by the distance between the query's and the image's pooled trunk features.

The gallery is the model's, position for position: an image the trunk cache rejected (undecodable) is ranked after
every other one (by position), and counted in results.json."""

from __future__ import annotations

import numpy as np

from eval.attr_logp import attr_logp_topk
from eval.attribute_only import attribute_only_topk
from eval.data import EvalData, ProbeInputs
from eval.linear_probe import LinearProbe, ProbeUnavailable, accuracy
from eval.probe_memo import split_probe
from eval.protocol import Manipulations
from fsnet.errors import ConfigError
from fsnet.trunk_features import TrunkCache
from fsnet.validation import split_training

PROBE_BASELINES = ("probe", "probe_attributes")  # their eval.baselines names


def build_probe(
    cache: TrunkCache,
    data: EvalData,
    train_ids: np.ndarray,
    train_labels: np.ndarray,
    validation: int | float,
    seed: int,
    strengths: list[float],
) -> ProbeInputs:
    """The probe fitted on ``train_ids`` (the training split, labels (n, A) in the model's codes) less the validation
    images (train.validation, train.seed), and its arrays for ``data``'s queries and gallery. ProbeUnavailable (one
    line) when it cannot be built."""
    if not len(train_ids):
        raise ProbeUnavailable("probe: the catalog's training split is empty: nothing to fit it on")
    try:
        fit_ids, validation_ids = split_training(train_ids, validation, seed)
    except ConfigError as err:  # more validation images asked for than the training split has
        raise ProbeUnavailable(f"probe: {err}") from None
    held_out = np.isin(train_ids, validation_ids)  # (n,) bool, as split_training decided
    probe, reused = split_probe(  # the fit training's probe expert made, when it was this one (eval/probe_memo.py)
        cache,
        fit_ids,
        train_labels[~held_out],
        validation_ids,
        train_labels[held_out],
        data.match.names,
        data.num_values,
        strengths,
    )
    query_found, query = cache.read(data.query_ids.tolist())
    gallery_found, gallery = cache.read(data.gallery_ids.tolist())
    if not gallery_found.any():
        raise ProbeUnavailable(
            f"probe: the trunk feature cache {cache.url} holds none of the {len(data.gallery_ids):,} gallery images "
            "(every one rejected)"
        )
    inputs = probe_inputs(probe, query_found, query["pooled"], gallery_found, gallery["pooled"], data.num_values)
    inputs.fit_reused = reused
    return inputs


def probe_inputs(
    probe: LinearProbe,
    query_found: np.ndarray,
    query_pooled: np.ndarray,
    gallery_found: np.ndarray,
    gallery_pooled: np.ndarray,
    num_values: list[int],
) -> ProbeInputs:
    """The probe's arrays at the evaluation's positions, from the features of the images found in the trunk cache:
    ``query_found`` (Q,) bool and ``query_pooled`` (found, F), the same for the gallery."""
    queries, gallery, channels = len(query_found), len(gallery_found), probe.mean.shape[0]
    query_features = np.tile(probe.mean, (queries, 1))  # (Q, F): a rejected query gets the fit images' mean
    query_features[query_found] = query_pooled
    gallery_features = np.zeros((gallery, channels), np.float32)  # (N, F)
    gallery_features[gallery_found] = gallery_pooled
    gallery_predicted = np.full((gallery, len(num_values)), -1, np.int64)  # (N, A)
    gallery_predicted[gallery_found] = probe.predict(gallery_pooled)
    gallery_probabilities = np.zeros((gallery, sum(num_values)), np.float32)  # (N, C)
    gallery_probabilities[gallery_found] = probe.probabilities(gallery_pooled)
    return ProbeInputs(
        probe=probe,
        query_features=query_features,
        query_found=query_found,
        query_predicted=probe.predict(query_features),
        query_probabilities=probe.probabilities(query_features),
        gallery_features=gallery_features,
        gallery_found=gallery_found,
        gallery_predicted=gallery_predicted,
        gallery_probabilities=gallery_probabilities,
    )


def held_out_accuracy(
    data: EvalData,
    query_predicted: np.ndarray,
    gallery_predicted: np.ndarray,
    query_found: np.ndarray | None = None,
    gallery_found: np.ndarray | None = None,
) -> list[float | None]:
    """Per attribute, the accuracy of predicted values (Q, A) and (N, A) on the evaluation's query and gallery
    images, each image once (the stored list's queries are gallery images), images not ``found`` left out; labels
    unknown or new since the model was trained do not count. None: no known label."""
    q = np.ones(len(data.query_ids), bool) if query_found is None else query_found
    g = np.ones(len(data.gallery_ids), bool) if gallery_found is None else gallery_found
    ids = np.concatenate([data.query_ids[q], data.gallery_ids[g]])
    predicted = np.concatenate([query_predicted[q], gallery_predicted[g]])
    labels = np.concatenate([data.query_labels[q], data.gallery_labels[g]])
    _, first = np.unique(ids, return_index=True)
    return accuracy(predicted[first], labels[first])


def rejected_last(positions: np.ndarray, found: np.ndarray, k: int) -> np.ndarray:
    """Top-k ``positions`` (M, k') among the found gallery images -> (M, min(k, N)) positions in the whole gallery,
    the images not found (rejected by the trunk cache) after the found ones, by position."""
    held, rejected = np.flatnonzero(found), np.flatnonzero(~found)
    out = held[positions]  # (M, k')
    short = min(k, len(found)) - out.shape[1]
    if short > 0:
        out = np.concatenate([out, np.broadcast_to(rejected[:short], (len(out), short))], axis=1)
    return out


def _inputs(data: EvalData) -> ProbeInputs:
    if data.probe is None:
        raise ValueError("a probe baseline without its inputs: jobs/evaluate.py leaves it out when none were built")
    return data.probe


class ProbeLogp:
    """``probe``: ``attr_logp`` (eval/attr_logp.py) on the linear probe's probabilities."""

    name = "probe"
    role = "baseline"

    def __init__(self, data: EvalData, algebra=None):  # the probe alone: no manipulation algebra
        self.data, self.inputs = data, _inputs(data)

    def topk(self, manipulations: Manipulations, k: int) -> np.ndarray:
        p = self.inputs
        top = attr_logp_topk(
            p.query_probabilities, p.gallery_probabilities[p.gallery_found], self.data.num_values, manipulations, k
        )
        return rejected_last(top, p.gallery_found, k)


class ProbeAttributes:
    """``probe_attributes``: ``attribute_only`` (eval/attribute_only.py) on the probe's predicted values, ties by
    the pooled trunk features' distance."""

    name = "probe_attributes"
    role = "baseline"

    def __init__(self, data: EvalData, algebra=None):
        self.data, self.inputs = data, _inputs(data)

    def topk(self, manipulations: Manipulations, k: int) -> np.ndarray:
        p, found = self.inputs, self.inputs.gallery_found
        top = attribute_only_topk(
            p.query_features,
            p.gallery_features[found],
            p.gallery_predicted[found],
            self.data.num_values,
            manipulations,
            k,
        )
        return rejected_last(top, found, k)
