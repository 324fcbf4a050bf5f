"""Train a retrieval model in the stages its class declares (``training_plan``, fsnet/model/training_plan.py) on
Ray Train. FashionSearchNet-v2, the paper's: stage 1 (L_C) -> stage 2 (L_C + L_T + L_TC) -> memory block from
training features -> stage 3 (L_G on those fixed features), the variant deciding which run. The ADDE-style model
(model.kind adde): stage 1 chunk classification (train.stage1) -> memory from the mean chunk features per value ->
stage 3 manipulation training on images (train.adde).

Local (starts Ray in this process; CPU workers over gloo):
    fsnet train --config tiny --catalog ./fsnet-demo/catalog --out ./fsnet-demo/run
    python -m jobs.train --config tiny --catalog ./fsnet-demo/catalog --out ./fsnet-demo/run
Cluster (GPU workers, DDP over NCCL, checkpoints on S3):
    ray job submit --working-dir . -- python -m jobs.train --catalog s3://b/catalogs/shop --out s3://b/runs/shop \\
        --set train.use_gpu=true --set train.workers=8

Outputs under --out: config.yaml, init.pt (the initial weights every worker starts from), stage1/ stage2/ stage3/
(Ray Train runs with per-epoch checkpoints), stage1.pt stage2.pt (each stage's model, written when it finishes),
features/ (fixed local features of the training split), memory.pt, model.pt (the final model), train_metrics.jsonl,
train_summary.json (classification accuracy on training images with saved and re-estimated BatchNorm
statistics, validation selection, stage-3 movement, times; held-out accuracy is evaluate's, in results.json, from
the predictions its index and query pass make anyway), validation_ids.txt (the training images held
out for model selection), <stage>.best.pt and <stage>.selection.json (each epoch's validation figures, the best kept).
With train.trunk: frozen, stages 1-2 read the pretrained trunk's maps from the catalog's trunk cache
(jobs/trunk_cache.py), computed first when missing; with train.tuned_blocks the maps of the blocks before the trunk's
last ones, which then train too at train.tuned_lr_scale of the stage's rate (in eval mode: ImageNet statistics).
The same command with the same --out resumes: a stage whose .pt exists is never redone; an unfinished one continues
from its last checkpoint. The workers' loops are jobs/train_loop.py's, the memory stage jobs/memory_stage.py's.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import time
from dataclasses import dataclass, replace
from typing import Annotated, Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import typer
from rich.table import Table

from eval.algebra import algebra_of
from eval.fused_logp import choose_weight
from fsnet.catalog.reader import Catalog
from fsnet.config import Config, saved_config_text
from fsnet.errors import CatalogError
from fsnet.input_size import resolve_input_size, shorter_sides
from fsnet.model import RetrievalModel, Stage, build_model, load_model, model_class, save_model
from fsnet.model.batch_norm import reestimate_statistics, trained_batch_norms
from fsnet.model.checkpoint import model_from_bytes
from fsnet.stage_epochs import resolve_epochs
from fsnet.storage import Storage, join
from fsnet.timing import timed
from fsnet.training import decode_for_training, in_training_layout, stage3_movement
from fsnet.training_sample import classifier_accuracy, training_sample
from fsnet.trunk_features import TrunkCache, frozen_trunk
from fsnet.validation_set import IMAGES as VALIDATION_IMAGES
from fsnet.validation_set import ValidationSet
from jobs import interrupt
from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.epoch_progress import POLL_S, EpochLines, images_per_s
from jobs.injected_fault import InjectedFault
from jobs.memory_stage import memory_stage
from jobs.probe_expert_fit import fit_probe_expert
from jobs.progress import bar
from jobs.ray_runtime import init_ray
from jobs.tables import show
from jobs.train_checks import check_probe_expert, check_resources, check_run_dir, check_tuned_blocks
from jobs.train_loop import METRICS_FILE, LoopConfig, global_loop, stage_loop
from jobs.training_estimate import estimate, estimate_lines
from jobs.training_split import TrainingSplit
from jobs.trunk_cache import trunk_cache

DECODE_BATCH = 64  # rows per decode task call: big enough to amortise the call, small enough to keep workers fed
DECODE_CPUS = 0.5  # per read and decode task: decoding is a small part of a step, so half a CPU keeps up and two run
VALIDATION_FILE = "validation_ids.txt"  # the training images held out for model selection, one id per line


@dataclass
class TrainResult:
    model_url: str
    summary: dict[str, Any]


def train(cfg: Config, catalog_url: str, out: str) -> TrainResult:
    storage = Storage(cfg.storage)
    catalog = Catalog.open(catalog_url, storage)
    cfg, chosen = resolve_input_size(cfg, lambda: shorter_sides(catalog))  # model.image_size: auto decided here
    if chosen:
        console.print(chosen, highlight=False)
    split = TrainingSplit.of(cfg, catalog)  # the images every stage trains on and validates with, read once here
    fit_ids, validation_ids = split.fit_ids, split.validation_ids
    if not len(fit_ids):  # a catalog packed to evaluate on: before anything is written
        raise CatalogError(
            f"{catalog_url}: no training images ({len(validation_ids)} held out for validation, the rest queries and "
            "gallery): pack it with smaller split.n_query / split.n_gallery to train on it; it can evaluate a model "
            "trained on another catalog as it is"
        )
    cfg, scaled = resolve_epochs(cfg, training_plan(cfg), len(fit_ids))  # train.epochs_for_images decided here
    if scaled:
        console.print(scaled, highlight=False)
    storage.check_output_folder(out)
    check_run_dir(cfg, storage, out)
    storage.write_text(join(out, "config.yaml"), saved_config_text(cfg))
    check_tuned_blocks(cfg)
    check_probe_expert(cfg)
    model_url = join(out, "model.pt")
    if storage.exists(model_url):  # before Ray starts: a re-run of a finished pipeline (fsnet demo) starts none
        console.print(f"{model_url} exists: training is complete; nothing to do")
        return TrainResult(model_url, json.loads(storage.read_text(join(out, "train_summary.json"))))
    init_ray(cfg.ray)
    check_resources(cfg)
    interrupt.if_stopped_now(
        f"{out}: finished stages and the running stage's last epoch checkpoint; the same command resumes there"
    )

    seconds: dict[str, float] = {}  # of the stages run now (one done earlier is skipped and not timed)
    storage.write_text(join(out, VALIDATION_FILE), "".join(f"{i}\n" for i in validation_ids))
    console.print(f"training: {len(fit_ids):,} images, {len(validation_ids):,} held out for validation")
    previous = _initial_model(cfg, catalog, storage, out)
    plan = training_plan(cfg)
    to_run = [s for s in plan if s.data == "images" and not storage.exists(join(out, f"{s.name}.pt"))]
    validation = validation_set(cfg, storage, split) if to_run else None  # every image stage selects epochs on it
    if to_run and cfg.train.use_gpu:
        console.print("estimate: none (GPU workers; the driver has no GPU to measure their steps on)")
    elif to_run:  # how long the stages on images will take, measured on a few steps of each here
        found = estimate(cfg, to_run, load_model(previous, storage), validation, len(fit_ids))
        for line in estimate_lines(found, cfg.train.workers):
            console.print(line, highlight=False)
    for stage in plan:
        previous, took = run_stage(cfg, split, storage, out, stage, previous, validation)
        if took is not None:
            seconds[stage.name] = took
    model = model_from_bytes(storage.read_bytes(previous), origin=previous)
    validation = validation if validation is not None else validation_set(cfg, storage, split)
    expert = None
    if cfg.train.probe_expert:  # before the fused weight: that is chosen with the predictions the index will store
        with timed(seconds, "probe_expert"):
            expert = fit_probe_expert(cfg, split, _trunk_cache(cfg, storage, split.catalog), model, validation)
        if expert["weight"] is None:
            console.print(f"probe expert: none ({expert['unavailable']})", highlight=False)
        else:
            console.print(f"probe expert: weight {expert['weight']:.2f} (validation accuracy {_accuracies(expert)})")
    with timed(seconds, "logp_weight"):
        fusion = logp_weight(model, validation)
    model.logp_weight = fusion["weight"] if fusion else None  # evaluate's <method>+logp row ranks with it
    save_model(model, model_url, storage)

    with timed(seconds, "train_accuracy"):
        on_training_images = train_accuracy(cfg, split, model)
    summary = {
        "catalog": catalog_url,
        "kind": cfg.model.kind,
        "variant": cfg.model.variant if model.variant is not None else None,  # a model with the ablation switches
        "backbone": cfg.model.backbone,
        "image_size": cfg.model.image_size,
        "workers": cfg.train.workers,
        "use_gpu": cfg.train.use_gpu,
        **on_training_images,
        "seconds": seconds,
        "trunk": cfg.train.trunk,
        "tuned_blocks": model.backbone.tuned_blocks,
        "validation_images": len(validation_ids),
        "selection": _selection(storage, out),
        **model.summary_figures(),
        "stage3_movement": stage3_movement(load_model(join(out, "memory.pt"), storage), model),
        "logp_fusion": fusion,
        "probe_expert": expert,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    storage.write_text(join(out, "train_summary.json"), json.dumps(summary, indent=1))
    return TrainResult(model_url, summary)


def training_plan(cfg: Config) -> list[Stage]:
    """The stages of ``model.kind``, in order: its model class declares them (fsnet/model/training_plan.py)."""
    return model_class(cfg.model.kind).training_plan(cfg.model)


def _selection(storage: Storage, out: str) -> dict[str, Any]:
    """Per stage: the validation metric, the epoch kept and its figure, and each epoch's (Worker.select)."""
    found = {}
    for stage in ("stage1", "stage2", "stage3"):
        url = join(out, f"{stage}.selection.json")
        if storage.exists(url):
            found[stage] = json.loads(storage.read_text(url))
    return found


# ----- stages (driver side) ----------------------------------------------------------------------------------
def _initial_model(cfg: Config, catalog: Catalog, storage: Storage, out: str) -> str:
    """The weights every stage-1 worker starts from (pretrained backbone, seeded heads), built once."""
    url = join(out, "init.pt")
    if not storage.exists(url):
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg.model, catalog.schema)
        if cfg.train.trunk == "frozen":  # the trunk the cached features come from (the same unless weights: none)
            model.backbone.trunk.load_state_dict(frozen_trunk(cfg.model).state_dict())
            model.backbone.set_tuned_blocks(cfg.train.tuned_blocks)  # model.pt keeps it: the embed path reads it
        save_model(model, url, storage)
    return url


def run_stage(
    cfg: Config,
    split: TrainingSplit,
    storage: Storage,
    out: str,
    stage: Stage,
    start_url: str,
    validation: ValidationSet | None = None,
) -> tuple[str, float | None]:
    """Run one stage of the plan from the model at ``start_url`` unless its model (<name>.pt) exists: (the stage
    model's URL, the seconds it took, None when it did not run). ``validation``: the images its epochs are selected
    on (validation_set; made here when not given)."""
    result_url = join(out, f"{stage.name}.pt")
    if storage.exists(result_url):
        console.print(f"{_title(stage)}: done earlier ({result_url}), skipped")
        return result_url, None
    if stage.data == "memory":
        start = time.perf_counter()
        memory_stage(cfg, split, storage, out, start_url, result_url)
        return result_url, time.perf_counter() - start
    if getattr(cfg.train, stage.section).epochs == 0:
        storage.write_bytes(result_url, storage.read_bytes(start_url))
        return result_url, None
    start = time.perf_counter()
    if stage.data == "images" and trained_batch_norms(load_model(start_url, storage), cfg.train):
        # BatchNorm's running averages describe the last ~20 batches (the last shards, in table order): re-estimated
        # over plain training images before the stage's model counts as done (fsnet/model/batch_norm.py), so a
        # resumed run never keeps the averages either
        fitted_url = join(out, f"{stage.name}.fitted.pt")
        if not storage.exists(fitted_url):
            _fit(cfg, split, storage, out, stage, start_url, fitted_url, validation)
        model = load_model(fitted_url, storage)
        save_model(reestimate_statistics(model, plain_batches(cfg, split)[0], cfg.train), result_url, storage)
        storage.remove(fitted_url)
    else:
        _fit(cfg, split, storage, out, stage, start_url, result_url, validation)
    took = time.perf_counter() - start
    epochs = getattr(cfg.train, stage.section).epochs
    console.print(stage_summary(storage, out, stage, epochs, took), highlight=False)
    return result_url, took


def plain_batches(cfg: Config, split: TrainingSplit) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(batches of train.batch_size images, their (N, A) labels): the seeded sample of training images that
    BatchNorm statistics are re-estimated on and the training accuracy is measured on, un-augmented as the embed
    path feeds them (fsnet/training_sample.py). A last partial batch is dropped when a full one exists: the
    re-estimate averages batches, so a small one would weigh as much as a full one."""
    images, labels = training_sample(split.catalog, split.fit_ids, cfg.model.image_size, cfg.train.seed)
    full = len(images) // cfg.train.batch_size * cfg.train.batch_size or len(images)
    return list(images[:full].split(cfg.train.batch_size)), labels[:full]


def train_accuracy(cfg: Config, split: TrainingSplit, model: RetrievalModel) -> dict[str, Any]:
    """The final model's classifier accuracy on the plain training sample with its saved BatchNorm statistics and
    with freshly re-estimated ones (on a copy; the saved model is unchanged): far apart when the saved statistics
    do not describe the final weights (fsnet/model/batch_norm.py). Run channels-last, as training runs (the same
    figures, faster on a CPU: fsnet/training.py)."""
    batches, labels = plain_batches(cfg, split)
    batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
    images = torch.cat(batches) if batches else torch.zeros((0, 3, cfg.model.image_size, cfg.model.image_size))
    model = in_training_layout(copy.deepcopy(model))  # a copy: the model saved keeps its layout
    saved = classifier_accuracy(model, images, labels)
    if trained_batch_norms(model, cfg.train):
        fresh = classifier_accuracy(reestimate_statistics(copy.deepcopy(model), batches, cfg.train), images, labels)
    else:  # none trains (a frozen trunk's are ImageNet's): re-estimating changes nothing, and a pass would only repeat
        fresh = dict(saved)
    return {
        "train_images": len(images),
        "train_accuracy": saved,
        "train_accuracy_mean": float(np.mean(list(saved.values()))) if saved else None,
        "train_accuracy_reestimated": fresh,
        "train_accuracy_reestimated_mean": float(np.mean(list(fresh.values()))) if fresh else None,
    }


def _title(stage: Stage) -> str:
    return "memory" if stage.data == "memory" else f"stage {stage.number}"


def _fit(
    cfg: Config,
    split: TrainingSplit,
    storage: Storage,
    out: str,
    stage: Stage,
    start_url: str,
    result_url: str,
    validation: ValidationSet | None,
):
    """One stage as a Ray Train TorchTrainer (resuming its run's last checkpoint); its model saved at result_url."""
    catalog = split.catalog
    fs, path = storage.arrow_fs(out)
    datasets = {}
    validation = validation if validation is not None else validation_set(cfg, storage, split)
    loop = LoopConfig(cfg, stage, start_url, out, validation, fault=InjectedFault.requested())  # fault: tests only
    if stage.data == "images" and cfg.train.trunk == "frozen":  # the workers read the cached maps themselves
        fit_ids, fit_labels = split.labels(split.fit_ids)
        loop = replace(
            loop, trunk_cache=_trunk_cache(cfg, storage, catalog).url, fit_ids=fit_ids, fit_labels=fit_labels
        )
    elif stage.data == "images":
        loop = replace(loop, fit_images=len(split.fit_ids))
        datasets["train"] = (
            split.rows(["id", "image", *catalog.schema.names], read_cpus=DECODE_CPUS)
            .randomize_block_order()
            .map_batches(
                decode_for_training,
                fn_kwargs=dict(size=cfg.model.image_size, augment=cfg.train.augment, attributes=catalog.schema.names),
                batch_size=DECODE_BATCH,
                batch_format="numpy",
                num_cpus=DECODE_CPUS,
            )
        )
    trainer = ray.train.torch.TorchTrainer(
        stage_loop if stage.data == "images" else global_loop,
        train_loop_config={"loop": loop},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker={"CPU": cfg.train.cpus_per_worker},
        ),
        run_config=ray.train.RunConfig(
            name=stage.name,  # the same name on a re-run: Ray Train restores this stage's checkpoints
            storage_path=path,
            storage_filesystem=fs,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.train.checkpoints_to_keep),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),  # our own epoch lines say what matters
        ),
        datasets=datasets,
    )
    epochs = getattr(cfg.train, stage.section).epochs
    with catalog.reading(), bar(_title(stage), "epochs") as progress:  # a shard that cannot be read: one line
        task = progress.add_task(stage.name, total=epochs)
        lines = EpochLines(storage, join(out, METRICS_FILE), stage.number, epochs, progress, task)
        # Ray: fit() on the main thread would replace fsnet's Ctrl-C handler with its own (jobs/interrupt.py)
        result = interrupt.outside_main_thread(trainer.fit, poll=lines.poll, every_s=POLL_S)
    with result.checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, "state.pt"), map_location="cpu", weights_only=True)
    best = join(out, f"{stage.name}.best.pt")  # the epoch of best validation figures (Worker.select)
    if storage.exists(best):
        storage.write_bytes(result_url, storage.read_bytes(best))
        return
    model = model_from_bytes(storage.read_bytes(start_url), origin=start_url)
    model.load_state_dict(state["model"])
    save_model(model, result_url, storage)


def validation_set(cfg: Config, storage: Storage, split: TrainingSplit) -> ValidationSet:
    """The validation images and a training sample (fsnet/validation_set.py) as the stages' models read them."""
    catalog, fit_ids, validation_ids = split.catalog, split.fit_ids, split.validation_ids
    if cfg.train.trunk == "frozen":  # the cached maps of a seeded choice of each
        rng = np.random.default_rng(cfg.train.seed)
        chosen = [np.sort(rng.permutation(ids)[:VALIDATION_IMAGES]) for ids in (validation_ids, fit_ids)]
        (val_ids, val_labels), (sample_ids, sample_labels) = (split.labels(ids) for ids in chosen)
        cache = _trunk_cache(cfg, storage, catalog)
        found, read = cache.read([*val_ids, *sample_ids], maps=True)  # one pass over the cache's maps for both
        val_found, sample_found = found[: len(val_ids)], found[len(val_ids) :]
        maps, v = read["maps"], int(val_found.sum())  # (found, C, h, w): the v validation images' first
        return ValidationSet(maps[:v], val_labels[val_found], maps[v:], sample_labels[sample_found], from_trunk=True)
    (val, val_labels), (sample, sample_labels) = (  # plain decoded images, as the embed path sees them
        training_sample(catalog, ids, cfg.model.image_size, cfg.train.seed, VALIDATION_IMAGES)
        for ids in (validation_ids, fit_ids)
    )
    return ValidationSet(val.numpy(), val_labels.numpy(), sample.numpy(), sample_labels.numpy(), from_trunk=False)


def _trunk_cache(cfg: Config, storage: Storage, catalog: Catalog) -> TrunkCache:
    """The cache entry a frozen-trunk run reads: the maps of the trunk's blocks before its tuned ones."""
    return trunk_cache(cfg, storage, catalog, cfg.model.image_size, tuned_blocks=cfg.train.tuned_blocks)


def logp_weight(model: RetrievalModel, validation: ValidationSet) -> dict[str, Any] | None:
    """The weight of the classifiers' -log P(target) beside the model's distance (eval/fused_logp.py), chosen on the
    validation images with the final model, and each grid point's validation Top-20; None when the validation
    images hold no manipulation."""
    reps, _, probabilities = validation.outputs(model, validation.inputs, torch.device("cpu"))
    schema = model.schema
    return choose_weight(
        algebra_of(model), reps, probabilities, validation.labels, list(schema.num_values), schema.names
    )


# ----- display -------------------------------------------------------------------------------------------------------
def stage_summary(storage: Storage, out: str, stage: Stage, epochs: int, seconds: float) -> str:
    """``stage 2: 12 epochs in 43 s (890 images/s); kept epoch 11 (val Top-20 1.000)``: what the stage did and which
    epoch it kept."""
    url = join(out, f"{stage.name}.selection.json")
    kept = ""
    if storage.exists(url):
        record = json.loads(storage.read_text(url))
        if record.get("best_epoch") is not None:
            name = {"val_top20": "val Top-20", "val_accuracy": "val accuracy"}.get(record["metric"], record["metric"])
            kept = f"; kept epoch {record['best_epoch'] + 1} ({name} {record['best']:.3f})"
    rate = images_per_s(storage, join(out, METRICS_FILE), stage.number)
    speed = f" ({rate:,.0f} images/s)" if rate else ""
    return f"{_title(stage)}: {epochs} epochs in {seconds:.0f} s{speed}{kept}"


def _accuracies(expert: dict[str, Any]) -> str:
    """``model 0.712, probe 0.655, joined 0.720``"""
    return ", ".join(f"{k} {v:.3f}" for k, v in expert["validation_accuracy"].items())


def print_summary(result: TrainResult) -> None:
    s = result.summary  # a run trained before a figure was recorded lacks it
    table = Table(title=f"accuracy on {s.get('train_images', 0):,} training images (held-out: fsnet evaluate)")
    table.add_column("attribute")
    table.add_column("accuracy", justify="right")
    for name, value in (s.get("train_accuracy") or {}).items():
        table.add_row(name, f"{value:.3f}")
    if s.get("train_accuracy_mean") is not None:
        table.add_row("mean", f"{s['train_accuracy_mean']:.3f}")
    show(console, table, keep=2)
    console.print(
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items()) + f"; model: {result.model_url}"
    )


def cli(
    catalog: Annotated[str, typer.Option("--catalog", callback=absolute_option, help="Packed catalog URL.")],
    out: Annotated[
        str, typer.Option("--out", "-o", callback=absolute_option, help="Run URL: checkpoints, model.pt, metrics.")
    ],
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Train the model in the paper's stages on Ray Train; re-running with the same --out resumes."""
    cfg = resolve_config(config, set_)
    print_summary(train(cfg, catalog, out))


if __name__ == "__main__":
    run_app(single_command(cli))
