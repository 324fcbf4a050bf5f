"""fsnet train on a real local Ray: 2 CPU workers (DDP over gloo), the tiny preset on a synthetic catalog,
local and S3 run directories, an injected worker death, and an interrupted run resumed by the same command."""

import copy
import json
import subprocess
import sys

import pytest
import torch

from eval.fused_logp import GRID
from fsnet.catalog.reader import Catalog
from fsnet.config import load_config, saved_config_text
from fsnet.decode import decode_batch
from fsnet.errors import ConfigError
from fsnet.lr_schedule import lr_factor
from fsnet.model import load_model
from fsnet.model.batch_norm import reestimate_statistics, trained_batch_norms
from fsnet.storage import Storage, join
from jobs.injected_fault import ENV as FAULT_ENV
from jobs.pack import pack
from jobs.probe_expert_fit import WEIGHTS
from jobs.synth import synth
from jobs.train import plain_batches, train
from jobs.training_split import TrainingSplit

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

# 240 images -> 120 training images -> 60 per worker -> 3 steps of 16 per epoch
RUN = [
    "synthetic.n=240",
    "train.batch_size=16",
    "train.stage1.epochs=4",
    "train.stage2.epochs=2",
    "train.stage3.epochs=2",
]


@pytest.fixture(scope="module")
def catalog_url(tmp_path_factory, ray_cluster):
    root = tmp_path_factory.mktemp("train-catalog")
    cfg = load_config(["tiny"], RUN)
    synth(cfg, str(root / "synth"), show_progress=False)
    pack(load_config(["tiny"], [*RUN, f"source.path={root / 'synth'}"]), str(root / "catalog"), show_progress=False)
    return str(root / "catalog")


def catalog_ids(catalog_url, *splits):
    return Catalog.open(catalog_url, Storage(load_config(["tiny"]).storage)).split_ids(list(splits)).astype(str)


def metrics_of(storage, out):
    return [json.loads(line) for line in storage.read_text(join(out, "train_metrics.jsonl")).splitlines()]


def test_train_end_to_end(catalog_url, tmp_path):
    # the input size decided from the catalog's 64 px photos (model.image_size: auto, fsnet/input_size.py)
    auto = ["model.image_size=auto", "train.auto_image_sizes=[48, 64, 96]"]
    cfg = load_config(["tiny"], [*RUN, "model.variant=full", *auto])
    storage = Storage(cfg.storage)
    out = str(tmp_path / "run")
    result = train(cfg, catalog_url, out)
    assert result.summary["image_size"] == 64 and load_model(result.model_url, storage).cfg.image_size == 64
    assert "image_size: 64" in storage.read_text(join(out, "config.yaml"))  # the resolved size is what a resume keeps
    cfg = cfg.model_copy(update={"model": load_model(result.model_url, storage).cfg})

    metrics = metrics_of(storage, out)
    stage1 = [m for m in metrics if m["stage"] == 1]
    assert [m["epoch"] for m in stage1] == [0, 1, 2, 3]
    assert stage1[-1]["loss"] < stage1[0]["loss"]  # stage-1 loss falls
    assert all(m["images"] == 96 for m in stage1)  # 2 workers x 3 steps x 16
    stage2 = [m for m in metrics if m["stage"] == 2]
    assert len(stage2) == 2 and all(m["triplets_per_step"] > 10 for m in stage2)  # valid in-batch triplets
    assert {"loss_c", "loss_t", "loss_tc"} <= set(stage2[0]) and "acc_color" in stage2[0]
    assert [m["epoch"] for m in metrics if m["stage"] == 3] == [0, 1]
    assert all(m["lr"] == getattr(cfg.train, f"stage{m['stage']}").lr for m in metrics)  # train.schedule: constant
    # every epoch scored on the validation images carved from the training split, the best one kept per stage
    assert all(0 <= m["val_accuracy"] <= 1 for m in stage1 + stage2)
    validation_ids = storage.read_text(join(out, "validation_ids.txt")).split()
    assert 0 < len(validation_ids) < 120 and not set(validation_ids) & set(catalog_ids(catalog_url, "query", "gallery"))
    selection = json.loads(storage.read_text(join(out, "stage2.selection.json")))
    assert [h["epoch"] for h in selection["history"]] == [0, 1]
    # Top-20 among a dozen validation images exists only when some manipulation's target is among them; without
    # one the stage selects by classifier accuracy, and says so
    metric = selection["metric"]
    scored = [h[metric] for h in selection["history"] if metric in h]
    assert metric in ("val_top20", "val_accuracy") and scored and all(0 <= x <= 1 for x in scored)
    assert selection["best"] == max(scored)
    best, kept = load_model(join(out, "stage2.best.pt"), storage), load_model(join(out, "stage2.pt"), storage)
    assert all(torch.equal(p, q) for p, q in zip(best.parameters(), kept.parameters()))  # statistics re-estimated

    catalog = Catalog.open(catalog_url, storage)
    model = load_model(result.model_url, storage)
    assert model.memory.table.shape == (sum(catalog.schema.num_values), cfg.model.embed_dim)  # one row per value
    assert (model.memory.counts > 0).all()
    batch = next(catalog.batches("gallery", ["image"], batch_size=4))
    with torch.no_grad():
        emb = model.embed(decode_batch(list(batch["image"]), cfg.model.image_size))
    assert emb.reps.shape == (4, 5, cfg.model.embed_dim) and torch.isfinite(emb.reps).all()
    # stage 3 moved lambda away from its start
    assert not torch.allclose(model.global_rep.lambdas, torch.ones(5))

    summary = json.loads(storage.read_text(join(out, "train_summary.json")))
    moved = summary["stage3_movement"]  # |after - before| / |before| from memory.pt to model.pt ("full": M too)
    assert moved["w_r"] > 0 and moved["lambda"] > 0 and moved["memory"] > 0, moved
    # the tiny trunk trains its BatchNorm statistics: re-estimated on plain training images after each image stage,
    # so the saved ones are those of the final weights (not the running averages of the last batches), and the
    # eval-mode classifiers score on plain training images what they score with freshly re-estimated statistics
    names = set(catalog.schema.names)
    assert set(summary["train_accuracy"]) == names == set(summary["train_accuracy_reestimated"])
    assert summary["train_images"] > 0 and summary["train_images"] % cfg.train.batch_size == 0
    assert abs(summary["train_accuracy_mean"] - summary["train_accuracy_reestimated_mean"]) <= 0.05
    batches, _ = plain_batches(cfg, TrainingSplit.of(cfg, catalog))
    fresh = reestimate_statistics(copy.deepcopy(model), batches, cfg.train)
    for saved, again in zip(trained_batch_norms(model, cfg.train), trained_batch_norms(fresh, cfg.train), strict=True):
        torch.testing.assert_close(saved.running_mean, again.running_mean)
        torch.testing.assert_close(saved.running_var, again.running_var)
    # the fused ranking's weight (eval/fused_logp.py), chosen on the same validation manipulations as the selection
    fusion = summary["logp_fusion"]
    if metric == "val_top20":
        assert model.logp_weight == fusion["weight"] >= 0 and [g["factor"] for g in fusion["grid"]] == list(GRID)
        # the smallest weight within one standard error of the best validation figure
        best = max(fusion["grid"], key=lambda g: g["top20"])
        near = [g["factor"] for g in fusion["grid"] if g["top20"] >= best["top20"] - best["standard_error"]]
        assert fusion["factor"] == min(near) and fusion["rule"] == "one standard error"
    else:
        assert fusion is None and model.logp_weight is None
    for name in ("config.yaml", "init.pt", "stage1.pt", "stage2.pt", "memory.pt", "stage3.pt"):
        assert storage.exists(join(out, name)), name
    assert any(n.startswith("checkpoint_") for n in storage.listdir(join(out, "stage1")))

    again = train(cfg, catalog_url, out)  # complete: nothing is redone
    assert again.summary == summary and len(metrics_of(storage, out)) == len(metrics)


@pytest.mark.s3
def test_train_to_s3_on_a_frozen_trunk(catalog_url, s3_endpoint):
    """train.trunk: frozen with one tuned block and the run on S3: the maps of the blocks before it computed once
    beside the catalog, stages 1-2 on them, those blocks unchanged from init.pt to model.pt, the tuned one trained."""
    from tests.conftest import BUCKET, s3_sets

    cfg = load_config(
        ["tiny"],
        [
            *RUN,
            "model.variant=rank_lg",
            "train.trunk=frozen",
            "train.tuned_blocks=1",
            "train.stage1.epochs=1",
            "train.stage2.epochs=1",
            "train.stage3.epochs=1",  # the repeat below includes stage 3 (its features read in one order)
            "train.schedule=cosine",
            "train.stage3.schedule=constant",  # a stage's own schedule wins over train.schedule
            "train.probe_expert=true",
            *s3_sets(s3_endpoint),
        ],
    )
    storage = Storage(cfg.storage)
    out = f"s3://{BUCKET}/runs/tiny"
    result = train(cfg, catalog_url, out)
    assert result.model_url == f"{out}/model.pt"
    model = load_model(result.model_url, storage)
    assert not model.variant.memory_updatable and model.memory.counts.sum() > 0
    assert any(n.startswith("checkpoint_") for n in storage.listdir(join(out, "stage2")))
    metrics = metrics_of(storage, out)
    assert [m["stage"] for m in metrics] == [1, 2, 3]
    assert metrics[0]["lr"] < cfg.train.stage1.lr and metrics[1]["lr"] < cfg.train.stage2.lr  # annealed
    assert metrics[2]["lr"] == cfg.train.stage3.lr  # constant
    (entry,) = storage.listdir(join(catalog_url, "..", "trunk-features"))
    assert "-tuned1-" in entry and storage.exists(join(catalog_url, "..", "trunk-features", entry, "trunk.json"))
    initial = load_model(join(out, "init.pt"), storage)
    assert model.backbone.tuned_blocks == 1 and result.summary["tuned_blocks"] == 1
    for before, after in zip(
        initial.backbone.cached().state_dict().values(), model.backbone.cached().state_dict().values()
    ):
        assert torch.equal(before, after)
    assert not torch.equal(initial.backbone.tuned()[0][0].weight, model.backbone.tuned()[0][0].weight)
    assert not torch.equal(initial.backbone.conv5[0].weight, model.backbone.conv5[0].weight)
    # the probe expert: its weight chosen on the validation images, joined when above 0, reading the cached maps
    # through the tuned block as pretrained (init.pt's), not as trained
    expert = result.summary["probe_expert"]
    assert expert["weight"] in WEIGHTS and set(expert["validation_nll"]) == {f"{w:.2f}" for w in WEIGHTS}
    assert expert["validation_nll"][f"{expert['weight']:.2f}"] == min(expert["validation_nll"].values())
    assert (model.probe_expert is not None) == (expert["weight"] > 0)
    # its probe fit kept in the trunk cache entry, for the evaluation (and the run below) to read back
    assert not expert["probe_fit_reused"]
    assert len(storage.listdir(join(catalog_url, "..", "trunk-features", entry, "probes"))) == 1
    if model.probe_expert is not None:
        for before, kept in zip(
            initial.backbone.tuned().state_dict().values(), model.probe_expert.blocks.state_dict().values()
        ):
            assert torch.equal(before, kept)
    # a seeded run repeats itself, stage 2 too: its heads' dropout is seeded per epoch and worker, whatever ran in
    # the reused Ray worker processes before (unseeded, the second run's stage-2 loss differed from the first)
    assert train(cfg, catalog_url, f"{out}-again").summary["probe_expert"]["probe_fit_reused"]
    losses = [(m["stage"], m["loss"]) for m in metrics_of(storage, out)]
    assert [(m["stage"], m["loss"]) for m in metrics_of(storage, f"{out}-again")] == losses
    again = load_model(f"{out}-again/model.pt", storage).state_dict()
    assert [k for k, v in model.state_dict().items() if not torch.equal(again[k], v)] == []


def test_worker_death_and_interrupted_run_resume(catalog_url, tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    # stage 3 (its loop on fixed features, its start and end) is test_train_end_to_end's: a stage fewer here (~20 s)
    # the rate annealed over each stage's steps (train.schedule: cosine), so the resumed epoch shows its place on it
    base = [*RUN, "model.variant=full", "train.stage1.epochs=2", "train.stage3.epochs=0", "train.schedule=cosine"]
    storage = Storage(load_config().storage)

    # 1. A worker dies at the first step of stage 2's second epoch; no retries: the command fails.
    failing = load_config(["tiny"], [*base, "train.max_failures=0"])
    monkeypatch.setenv(FAULT_ENV, "2:3")  # test only (jobs/injected_fault.py)
    with pytest.raises(Exception):
        train(failing, catalog_url, out)
    assert storage.exists(join(out, "stage1.pt")) and not storage.exists(join(out, "stage2.pt"))
    before = metrics_of(storage, out)
    assert [(m["stage"], m["epoch"]) for m in before] == [(1, 0), (1, 1), (2, 0)]
    stage1_bytes = storage.read_bytes(join(out, "stage1.pt"))

    # 2. The same command again: stage 1 is not redone, stage 2 continues after its epoch 0 checkpoint, and a worker
    #    dies once more at the epoch's next step, which Ray Train recovers from (max_failures=1) by itself: the new
    #    worker group resumes from the same checkpoint and the epoch is counted once.
    resumed = load_config(["tiny"], [*base, "train.max_failures=1"])
    monkeypatch.setenv(FAULT_ENV, "2:4")
    result = train(resumed, catalog_url, out)
    after = metrics_of(storage, out)
    assert after[: len(before)] == before
    assert [(m["stage"], m["epoch"]) for m in after[len(before) :]] == [(2, 1)]
    # each epoch's last step (3 per epoch, 6 per stage) on the cosine from the stage's rate, the resumed one too
    stage_lr = {1: resumed.train.stage1.lr, 2: resumed.train.stage2.lr}
    expected = [stage_lr[m["stage"]] * lr_factor("cosine", (3 * m["epoch"] + 2) / 6) for m in after]
    assert [m["lr"] for m in after] == pytest.approx(expected)
    assert storage.read_bytes(join(out, "stage1.pt")) == stage1_bytes
    for step in (3, 4):
        assert storage.exists(join(out, f".fault-injected-stage2-step{step}")), step
    assert load_model(result.model_url, storage).memory.table.shape[0] == 23


def test_bad_config_values(catalog_url, tmp_path):
    cfg = load_config(["tiny"], ["train.cpus_per_worker=1"])  # 2 workers x 1 CPU on a 2-CPU machine
    with pytest.raises(
        ConfigError, match=r"train.workers x train.cpus_per_worker = 2 x 1.0 leaves less than 1 of the cluster's 2 CPUs"
    ):
        train(cfg, catalog_url, str(tmp_path / "a"))
    cfg = load_config(["tiny"], ["model.backbone=alexnet"])
    train_dir = str(tmp_path / "b")
    Storage(cfg.storage).write_text(join(train_dir, "config.yaml"), saved_config_text(load_config(["tiny"])))
    with pytest.raises(
        ConfigError, match=r"holds a run of another model \(model.backbone: 'tiny' there, 'alexnet' now\)"
    ):
        train(cfg, catalog_url, train_dir)
    frozen = load_config(["tiny"], ["train.trunk=frozen"])  # stage 1 on a frozen trunk is not a fine-tuned one
    frozen_dir = str(tmp_path / "c")
    Storage(cfg.storage).write_text(join(frozen_dir, "config.yaml"), saved_config_text(load_config(["tiny"])))
    with pytest.raises(ConfigError, match=r"another model \(train.trunk: 'finetune' there, 'frozen' now\)"):
        train(frozen, catalog_url, frozen_dir)
    with pytest.raises(ConfigError, match=r"train.tuned_blocks=1 with train.trunk=finetune: .* Set train.trunk=frozen"):
        train(load_config(["tiny"], ["train.tuned_blocks=1"]), catalog_url, str(tmp_path / "d"))
    with pytest.raises(ConfigError, match=r"train.probe_expert=true with train.trunk=finetune: .* reads the frozen"):
        train(load_config(["tiny"], ["train.probe_expert=true"]), catalog_url, str(tmp_path / "e"))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobs.train",
            "--catalog",
            catalog_url,
            "--out",
            str(tmp_path / "c"),
            "--set",
            "train.workers=0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2 and len(lines) == 1 and "train.workers: Input should be greater than 0" in lines[0], (
        run.stderr
    )
