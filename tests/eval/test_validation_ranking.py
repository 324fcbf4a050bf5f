"""Training's validation Top-K (eval/validation_ranking.py) is the evaluation's figure on the validation images: the
threshold evaluator's lists equal the brute-force reference's, so the figure equals the curve computed from them."""

import numpy as np
import torch

from eval.algebra import algebra_of
from eval.brute_force import brute_force_topk
from eval.metrics import summarize
from eval.protocol import build_manipulations
from eval.validation_ranking import validation_top_k
from fsnet.model import build_model
from tests.model.helpers import SCHEMA_3, labels_with_manipulations, model_config


def test_validation_top_k_is_the_brute_force_figure():
    torch.manual_seed(0)
    model = build_model(model_config(), SCHEMA_3, pretrained=False).eval()
    num_values = list(SCHEMA_3.num_values)
    labels = labels_with_manipulations(80, num_values).numpy()
    rng = np.random.default_rng(0)
    reps = rng.normal(size=(80, len(num_values), model.cfg.embed_dim)).astype(np.float32)
    queries = 30
    figure = validation_top_k(model, reps, labels, k=5, queries=queries, seed=1)

    chosen = np.sort(np.random.default_rng(1).permutation(np.arange(80))[:queries])  # every label is known
    m = build_manipulations(labels[chosen], labels, SCHEMA_3.names, num_values)
    algebra = algebra_of(model)
    gallery = algebra.global_of(reps.astype(np.float64))
    top = brute_force_topk(algebra, reps[chosen], gallery, m, 5, values=labels[chosen]).positions
    assert figure == summarize(m, top, labels, 5)["average"]["top_k"][4] and 0 < figure < 1
