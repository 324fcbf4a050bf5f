"""fsnet ablation on a real local Ray and S3 (moto): two FSN variants sharing stages, the ADDE-style model and one
baseline, one report comparing them."""

import json

import pytest
import torch
from typer.testing import CliRunner

from eval.results import read_results
from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.model import load_model
from fsnet.storage import Storage
from jobs.cli import app
from jobs.evaluate import evaluate
from tests.conftest import BUCKET, s3_sets
from tests.jobs.tiny_model import tiny_catalog_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, ray_cluster) -> str:
    """A tiny packed synthetic catalog."""
    return tiny_catalog_and_model(tmp_path_factory.mktemp("ablation"))["catalog"]


@pytest.mark.s3
def test_ablation_shares_stages_and_reports(catalog, s3_endpoint):
    """The comparison command: two FSN variants (sharing stages), the ADDE-style model and one baseline, one report."""
    sets = [
        *s3_sets(s3_endpoint),
        "train.trunk=frozen",  # as the CPU presets train: the receiver must run the tuned block on cached maps too
        "train.tuned_blocks=1",
        "train.stage1.epochs=1",
        "train.stage2.epochs=0",  # stage 2 is test_train.py's (~20 s a stage)
        "train.stage3.epochs=0",  # stage 3 is test_train.py's too: full's stage3.pt a copy (rank_l has none)
        "train.adde.epochs=1",
        "report.examples=1",
    ]
    out = f"s3://{BUCKET}/ablation"
    result = CliRunner().invoke(
        app,
        [
            "ablation",
            "--config",
            "tiny",
            "--catalog",
            catalog,
            "--variants",
            "rank_l,full,attr_logp,adde",
            "--out",
            out,
            *[x for s in sets for x in ("--set", s)],
        ],
    )
    assert result.exit_code == 0, result.output
    # full takes rank_l's stages 1-2 and memory and trains stage 3 only
    assert "stage1 shared from" in result.output and "memory shared from" in result.output
    assert "adde/run: stage1 shared" not in result.output  # another network: nothing shared
    storage = Storage(load_config([], s3_sets(s3_endpoint)).storage)
    html = storage.read_text(f"{out}/report/report.html")
    for method in ("rank_l", "full", "adde", "attr_logp"):
        assert f'data-method="{method}"' in html, method
    assert 'data-method="attribute_only"' not in html  # only the baselines named
    rank_l = read_results(storage.read_text(f"{out}/rank_l/eval/results.json"), "rank_l")
    assert rank_l.model.variant == "rank_l" and rank_l.training["variant"] == "rank_l"
    assert not storage.exists(f"{out}/rank_l/run/stage3.pt") and storage.exists(f"{out}/full/run/stage3.pt")
    assert load_model(f"{out}/rank_l/run/model.pt", storage).backbone.tuned_blocks == 1  # shared stages keep it
    adde = read_results(storage.read_text(f"{out}/adde/eval/results.json"), "adde")
    assert adde.training["kind"] == "adde"
    fused = [("adde+logp", "model")] if adde.training["logp_fusion"] else []  # a weight where validation ranks
    assert [(r.method, r.role) for r in adde.runs] == [("adde", "model"), *fused, ("attr_logp", "baseline")]
    assert adde.model.global_dim == 5 * load_config(["tiny"]).model.embed_dim  # the concatenated chunks
    # its factorized Top-K (additive memory, the queries' labels as old values) equals faiss on explicit F + M i
    cfg = load_config(["tiny"], [*s3_sets(s3_endpoint), "report.examples=0"])
    checked = evaluate(cfg, f"{out}/adde/index", catalog, f"{out}/adde/eval-check", check=True)
    assert checked["check"]["identical"]
    assert json.loads(storage.read_text(f"{out}/adde/eval-check/results.json"))["check"]["identical"]

    # the ADDE-style training itself (trained once here, not again in test_train.py): chunk classification ->
    # memory from the mean chunk features -> manipulation training on images, no stage 2
    run = f"{out}/adde/run"
    metrics = [json.loads(line) for line in storage.read_text(f"{run}/train_metrics.jsonl").splitlines()]
    assert [(m["stage"], m["epoch"]) for m in metrics] == [(1, 0), (3, 0)]
    assert {"loss_c", "loss_t", "loss_m", "loss_l1", "loss_off"} <= set(metrics[1])
    assert metrics[1]["triplets_per_step"] > 5
    for name in ("stage1.pt", "memory.pt", "stage3.pt", "model.pt"):
        assert storage.exists(f"{run}/{name}"), name
    assert not storage.exists(f"{run}/stage2.pt")
    initial, final = load_model(f"{run}/memory.pt", storage), load_model(f"{run}/model.pt", storage)
    assert float(initial.memory.off_diagonal().detach().abs().sum()) == 0.0  # block-diagonal from the means
    assert not torch.allclose(initial.memory.weight, final.memory.weight)  # stage 3 trained the memory
    assert not torch.allclose(initial.fc2.weight, final.fc2.weight)  # and the network
    summary = json.loads(storage.read_text(f"{run}/train_summary.json"))
    assert summary["kind"] == "adde" and summary["variant"] is None
    assert 0 < summary["memory_off_diagonal_share"] < 0.5
    # its held-out accuracy is the evaluation's (query + gallery predictions), one figure per attribute
    names = Catalog.open(catalog, storage).schema.names
    assert list(adde.model.accuracy) == names and 0 < adde.model.mean_accuracy <= 1
    assert summary["stage3_movement"] is None  # its stage 3 trains on images, not L_G on fixed features
