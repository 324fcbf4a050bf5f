"""train.probe_expert: after the stages, the pretrained trunk's linear probe fitted on the training images the stages
trained on (the pooled maps of the trunk cache; eval/linear_probe.py, its regularisation chosen on the validation
images) and joined to the model's classifiers (fsnet/model/probe_expert.py), with the weight of lowest negative
log-likelihood on the validation images. A weight of 0 leaves the model as trained."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from eval.linear_probe import ProbeUnavailable
from eval.probe_memo import split_probe
from fsnet.config import Config
from fsnet.model.probe_expert import ProbeExpert, joined, mean_nll
from fsnet.model.retrieval_model import RetrievalModel
from fsnet.trunk_features import TrunkCache, pretrained_tuned_blocks
from fsnet.validation_set import EMBED_BATCH, ValidationSet
from jobs.training_split import TrainingSplit

WEIGHTS = [i / 20 for i in range(21)]  # the probe's weights tried, 0 to 1; a tie keeps the smaller


def fit_probe_expert(
    cfg: Config, split: TrainingSplit, cache: TrunkCache, model: RetrievalModel, validation: ValidationSet
) -> dict[str, Any]:
    """Fit the probe, choose its weight on ``validation`` and join it to ``model`` (in place, unless the weight chosen
    is 0): the figures train_summary.json keeps. A probe that cannot be fitted leaves the model as trained and says
    why (weight None)."""
    names, num_values = model.schema.names, list(model.schema.num_values)
    (fit_ids, fit_labels), (val_ids, val_labels) = (split.labels(ids) for ids in (split.fit_ids, split.validation_ids))
    try:  # kept in the trunk cache: the evaluation's probe baselines read this fit back (eval/probe_memo.py)
        probe, reused = split_probe(
            cache, fit_ids, fit_labels, val_ids, val_labels, names, num_values, cfg.probe.regularization
        )
    except ProbeUnavailable as err:  # nothing to fit it on (an attribute without a labelled training image, say)
        return {"weight": None, "unavailable": str(err)}
    blocks = pretrained_tuned_blocks(cfg.model, model.backbone.tuned_blocks)
    expert = ProbeExpert.fitted(blocks, probe.mean, probe.scale, probe.weights, probe.biases, weight=0.0).eval()
    _, _, p_model = validation.outputs(model, validation.inputs, torch.device("cpu"))  # (V, C) the model alone
    p_probe = _probe_probabilities(expert, validation)  # (V, C)
    nll = {w: mean_nll(joined(p_model, p_probe, num_values, w), validation.labels, num_values) for w in WEIGHTS}
    weight = min(WEIGHTS, key=lambda w: nll[w])
    if weight > 0:
        expert.weight = weight
        model.probe_expert = expert
    chosen = joined(p_model, p_probe, num_values, weight)
    return {
        "weight": weight,
        "validation_nll": {f"{w:.2f}": round(v, 5) for w, v in nll.items()},
        "validation_accuracy": {
            "model": validation.accuracy(_predicted(p_model, num_values)),
            "probe": validation.accuracy(_predicted(p_probe, num_values)),
            "joined": validation.accuracy(_predicted(chosen, num_values)),
        },
        "probe_fit_images": probe.fit_images,
        "probe_fit_reused": reused,  # read back from an identical earlier fit
    }


def _probe_probabilities(expert: ProbeExpert, validation: ValidationSet) -> np.ndarray:
    """(V, C) the probe's probabilities of the validation images, read through the expert as the index will."""
    if not validation.from_trunk:
        raise ValueError("the probe expert reads the frozen trunk's cached maps (train.trunk: frozen)")
    out = []
    with torch.no_grad():
        for lo in range(0, len(validation.inputs), EMBED_BATCH):
            maps = torch.tensor(validation.inputs[lo : lo + EMBED_BATCH]).float()  # (B, C, h, w)
            out.append(torch.cat([lp.exp() for lp in expert.log_probabilities(maps)], dim=1).numpy())
    return np.concatenate(out)


def _predicted(probabilities: np.ndarray, num_values: list[int]) -> np.ndarray:
    """(N, C) -> (N, A) the most probable value of each attribute."""
    bounds = np.cumsum([0, *num_values])
    return np.stack([probabilities[:, lo:hi].argmax(axis=1) for lo, hi in zip(bounds[:-1], bounds[1:])], axis=1)
