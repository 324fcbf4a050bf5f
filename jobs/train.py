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
from its last checkpoint.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import typer
import yaml
from rich.table import Table

from eval.algebra import algebra_of
from eval.fused_logp import choose_weight
from eval.validation_ranking import validation_top_k
from fsnet.cached_batches import CachedBatches
from fsnet.catalog.reader import Catalog
from fsnet.columns import column_array
from fsnet.config import Config, StageConfig, saved_config_text
from fsnet.embedding import EmbedImages
from fsnet.epoch_selection import better_epoch
from fsnet.errors import CatalogError, ConfigError
from fsnet.input_size import resolve_input_size, shorter_sides
from fsnet.losses import StageLoss
from fsnet.losses.stage_loss import TERMS
from fsnet.lr_schedule import StageSchedule
from fsnet.model import RetrievalModel, Stage, build_model, load_model, model_class, save_model
from fsnet.model.batch_norm import reestimate_statistics, trained_batch_norms, training_mode
from fsnet.model.checkpoint import model_from_bytes
from fsnet.model.memory import ExactValueSums
from fsnet.sampling import GlobalTripletSampler
from fsnet.storage import Storage, join
from fsnet.timing import timed
from fsnet.training import (
    EpochMeter,
    decode_for_training,
    epoch_metrics,
    global_step,
    local_step,
    make_optimizer,
    manipulation_step,
    stage3_movement,
    trainable,
)
from fsnet.training_sample import classifier_accuracy, training_sample
from fsnet.trunk_features import TrunkCache, frozen_trunk
from fsnet.validation import split_training
from fsnet.validation_set import IMAGES as VALIDATION_IMAGES
from fsnet.validation_set import ValidationSet
from jobs import interrupt
from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.embed_rows import embed_rows
from jobs.epoch_progress import POLL_S, EpochLines, images_per_s
from jobs.progress import bar, pipeline_bar
from jobs.ray_runtime import cluster_cpus, init_ray
from jobs.tables import show
from jobs.trunk_cache import trunk_cache

DECODE_BATCH = 64  # rows per decode task call: big enough to amortise the call, small enough to keep workers fed
DECODE_CPUS = 0.5  # per read and decode task: decoding is a small part of a step, so half a CPU keeps up and two run
FREE_CPUS = 1.0  # what the workers must leave: Ray Data's file-listing task takes a whole CPU, else the run hangs
METRICS_FILE = "train_metrics.jsonl"
RUN_DEFINING_TRAIN_KEYS = ("trunk", "tuned_blocks", "batch_norm")  # with the model's keys: what a resumed --out keeps
VALIDATION_FILE = "validation_ids.txt"  # the training images held out for model selection, one id per line
SELECT_K = 20  # a stage keeps its epoch of best validation Top-20 (the report's headline K)
FAULT_MARKER = ".fault-injected-stage{stage}-step{step}"  # the test-only fault fires once per place and --out
FAULT_REPORT_GRACE_S = 5.0  # the test-only fault waits this long, so the controller has taken the last report


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
    fit_ids, validation_ids = training_ids(cfg, catalog)
    if not len(fit_ids):  # a catalog packed to evaluate on: before anything is written
        raise CatalogError(
            f"{catalog_url}: no training images ({len(validation_ids)} held out for validation, the rest queries and "
            "gallery): pack it with smaller split.n_query / split.n_gallery to train on it; it can evaluate a model "
            "trained on another catalog as it is"
        )
    storage.check_output_folder(out)
    _check_run_dir(cfg, storage, out)
    storage.write_text(join(out, "config.yaml"), saved_config_text(cfg))
    _check_tuned_blocks(cfg)
    model_url = join(out, "model.pt")
    if storage.exists(model_url):  # before Ray starts: a re-run of a finished pipeline (fsnet demo) starts none
        console.print(f"{model_url} exists: training is complete; nothing to do")
        return TrainResult(model_url, json.loads(storage.read_text(join(out, "train_summary.json"))))
    init_ray(cfg.ray)
    _check_resources(cfg)
    interrupt.keep(
        f"{out}: finished stages and the running stage's last epoch checkpoint; the same command resumes there"
    )

    seconds: dict[str, float] = {}  # of the stages run now (one done earlier is skipped and not timed)
    storage.write_text(join(out, VALIDATION_FILE), "".join(f"{i}\n" for i in validation_ids))
    console.print(f"training: {len(fit_ids):,} images, {len(validation_ids):,} held out for validation")
    previous = _initial_model(cfg, catalog, storage, out)
    for stage in training_plan(cfg):
        previous, took = run_stage(cfg, catalog, storage, out, stage, previous)
        if took is not None:
            seconds[stage.name] = took
    model = model_from_bytes(storage.read_bytes(previous), origin=previous)
    with timed(seconds, "logp_weight"):
        fusion = logp_weight(cfg, storage, catalog, model)
    model.logp_weight = fusion["weight"] if fusion else None  # evaluate's <method>+logp row ranks with it
    save_model(model, model_url, storage)

    with timed(seconds, "train_accuracy"):
        on_training_images = train_accuracy(cfg, catalog, model)
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


def training_ids(cfg: Config, catalog: Catalog) -> tuple[np.ndarray, np.ndarray]:
    """(the ids the stages train on, the validation ids held out of them): the training split, seeded by train.seed
    (fsnet/validation.py; the same in every process that asks)."""
    return split_training(catalog.split_ids("train").astype(str), cfg.train.validation, cfg.train.seed)


def training_rows(cfg: Config, catalog: Catalog, columns: list[str], **read) -> "ray.data.Dataset":
    """The catalog rows the stages train on (the training split without the validation images)."""
    from ray.data.expressions import col

    fit_ids, _ = training_ids(cfg, catalog)
    return catalog.dataset("train", columns, **read).filter(expr=col("id").is_in(fit_ids.tolist()))


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
    cfg: Config, catalog: Catalog, storage: Storage, out: str, stage: Stage, start_url: str
) -> tuple[str, float | None]:
    """Run one stage of the plan from the model at ``start_url`` unless its model (<name>.pt) exists: (the stage
    model's URL, the seconds it took, None when it did not run)."""
    result_url = join(out, f"{stage.name}.pt")
    if storage.exists(result_url):
        console.print(f"{_title(stage)}: done earlier ({result_url}), skipped")
        return result_url, None
    if stage.data == "memory":
        start = time.perf_counter()
        _memory(cfg, catalog, storage, out, start_url, result_url)
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
            _fit(cfg, catalog, storage, out, stage, start_url, fitted_url)
        model = load_model(fitted_url, storage)
        save_model(reestimate_statistics(model, plain_batches(cfg, catalog)[0], cfg.train), result_url, storage)
        storage.remove(fitted_url)
    else:
        _fit(cfg, catalog, storage, out, stage, start_url, result_url)
    took = time.perf_counter() - start
    epochs = getattr(cfg.train, stage.section).epochs
    console.print(stage_summary(storage, out, stage, epochs, took), highlight=False)
    return result_url, took


def plain_batches(cfg: Config, catalog: Catalog) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(batches of train.batch_size images, their (N, A) labels): the seeded sample of training images that
    BatchNorm statistics are re-estimated on and the training accuracy is measured on, un-augmented as the embed
    path feeds them (fsnet/training_sample.py). A last partial batch is dropped when a full one exists: the
    re-estimate averages batches, so a small one would weigh as much as a full one."""
    images, labels = training_sample(catalog, training_ids(cfg, catalog)[0], cfg.model.image_size, cfg.train.seed)
    full = len(images) // cfg.train.batch_size * cfg.train.batch_size or len(images)
    return list(images[:full].split(cfg.train.batch_size)), labels[:full]


def train_accuracy(cfg: Config, catalog: Catalog, model: RetrievalModel) -> dict[str, Any]:
    """The final model's classifier accuracy on the plain training sample with its saved BatchNorm statistics and
    with freshly re-estimated ones (on a copy; the saved model is unchanged): far apart when the saved statistics
    do not describe the final weights (fsnet/model/batch_norm.py)."""
    batches, labels = plain_batches(cfg, catalog)
    images = torch.cat(batches) if batches else torch.zeros((0, 3, cfg.model.image_size, cfg.model.image_size))
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


def _fit(cfg: Config, catalog: Catalog, storage: Storage, out: str, stage: Stage, start_url: str, result_url: str):
    """One stage as a Ray Train TorchTrainer (resuming its run's last checkpoint); its model saved at result_url."""
    fs, path = storage.arrow_fs(out)
    datasets = {}
    loop_config = {"cfg": cfg, "stage": stage, "start_url": start_url, "out": out}
    loop_config["validation"] = validation_set(cfg, storage, catalog)
    if stage.data == "images" and cfg.train.trunk == "frozen":  # the workers read the cached maps themselves
        loop_config["trunk_cache"] = _trunk_cache(cfg, storage, catalog).url
        loop_config["fit_ids"], loop_config["fit_labels"] = _labels_of(catalog, training_ids(cfg, catalog)[0])
    elif stage.data == "images":
        loop_config["fit_images"] = len(training_ids(cfg, catalog)[0])
        datasets["train"] = (
            training_rows(cfg, catalog, ["id", "image", *catalog.schema.names], read_cpus=DECODE_CPUS)
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
        train_loop_config=loop_config,
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


def validation_set(cfg: Config, storage: Storage, catalog: Catalog) -> ValidationSet:
    """The validation images and a training sample (fsnet/validation_set.py) as the stages' models read them."""
    fit_ids, validation_ids = training_ids(cfg, catalog)
    if cfg.train.trunk == "frozen":  # the cached maps of a seeded choice of each
        rng = np.random.default_rng(cfg.train.seed)
        chosen = [np.sort(rng.permutation(ids)[:VALIDATION_IMAGES]) for ids in (validation_ids, fit_ids)]
        (val_ids, val_labels), (sample_ids, sample_labels) = (_labels_of(catalog, ids) for ids in chosen)
        cache = _trunk_cache(cfg, storage, catalog)
        (val_found, val), (sample_found, sample) = (cache.read(ids, maps=True) for ids in (val_ids, sample_ids))
        return ValidationSet(
            val["maps"], val_labels[val_found], sample["maps"], sample_labels[sample_found], from_trunk=True
        )
    (val, val_labels), (sample, sample_labels) = (  # plain decoded images, as the embed path sees them
        training_sample(catalog, ids, cfg.model.image_size, cfg.train.seed, VALIDATION_IMAGES)
        for ids in (validation_ids, fit_ids)
    )
    return ValidationSet(val.numpy(), val_labels.numpy(), sample.numpy(), sample_labels.numpy(), from_trunk=False)


def _trunk_cache(cfg: Config, storage: Storage, catalog: Catalog) -> TrunkCache:
    """The cache entry a frozen-trunk run reads: the maps of the trunk's blocks before its tuned ones."""
    return trunk_cache(cfg, storage, catalog, cfg.model.image_size, tuned_blocks=cfg.train.tuned_blocks)


def logp_weight(cfg: Config, storage: Storage, catalog: Catalog, model: RetrievalModel) -> dict[str, Any] | None:
    """The weight of the classifiers' -log P(target) beside the model's distance (eval/fused_logp.py), chosen on the
    validation images with the final model, and each grid point's validation Top-20; None when the validation
    images hold no manipulation."""
    validation = validation_set(cfg, storage, catalog)
    reps, _, probabilities = validation.outputs(model, validation.inputs, torch.device("cpu"))
    schema = model.schema
    return choose_weight(
        algebra_of(model), reps, probabilities, validation.labels, list(schema.num_values), schema.names
    )


def _labels_of(catalog: Catalog, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, (N, A) labels) of ``ids`` in catalog order, read without Ray."""
    rows = catalog.rows(ids.tolist(), ["id", *catalog.schema.names])
    labels = np.stack([rows[a] for a in catalog.schema.names], axis=1).astype(np.int16)
    return rows["id"].astype(str), labels


def _memory(cfg: Config, catalog: Catalog, storage: Storage, out: str, start_url: str, memory_url: str) -> None:
    """Fixed local features of the training split (the embedding actors the index job uses), then M as the mean
    feature per value."""
    features = join(out, "features")
    fs, path = storage.arrow_fs(features)
    for name in storage.listdir(features):  # a partial earlier attempt
        storage.remove(join(features, name))
    images = len(training_ids(cfg, catalog)[0])
    with catalog.reading(), pipeline_bar("memory", images, EmbedImages.__name__):  # a bad shard: one line naming it
        rows = training_rows(cfg, catalog, ["id", "image", *catalog.schema.names], with_shard=True)
        embed_rows(cfg, storage, start_url, catalog, rows).write_parquet(path, filesystem=fs)

    model = load_model(start_url, storage)
    sums = ExactValueSums(catalog.schema.num_values, cfg.model.embed_dim)  # rows arrive in the pool's order
    for batch in pads.dataset(path, filesystem=fs, format="parquet").to_batches(
        columns=["reps", "error", *catalog.schema.names], filter=pads.field("error").is_null()
    ):
        table = pa.Table.from_batches([batch])
        reps = torch.from_numpy(column_array(table, "reps", (len(catalog.schema.names), cfg.model.embed_dim)))
        labels = torch.from_numpy(
            np.stack([table[a].to_numpy() for a in catalog.schema.names], axis=1).astype(np.int64)
        )
        sums.add(reps, labels)
    totals, counts = sums.totals()
    model.memory.set_means(totals, counts)
    save_model(model, memory_url, storage)
    images = int(counts.sum() // len(catalog.schema.names))
    console.print(f"memory: {int((counts > 0).sum())} of {len(counts)} values seen in {images:,} training images")


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the block (a CPU worker's own count is the CPUs it holds)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        yield
    finally:
        torch.set_num_threads(saved)


# ----- the loops (run on every Ray Train worker) -------------------------------------------------------------
@dataclass
class Worker:
    """What a stage's loop shares with its epoch end and its fault: the run, the stage, and this worker's place."""

    cfg: Config
    storage: Storage
    out: str
    stage: Stage
    rank: int
    world: int
    local_world: int = 1  # workers of this run on this worker's node

    @classmethod
    def current(cls, config: dict) -> "Worker":
        """From the loop's ``train_loop_config`` and Ray Train's context."""
        cfg: Config = config["cfg"]
        context = ray.train.get_context()  # Ray: this worker's rank and the world size
        return cls(
            cfg,
            Storage(cfg.storage),
            config["out"],
            config["stage"],
            context.get_world_rank(),
            context.get_world_size(),
            context.get_local_world_size(),
        )

    @property
    def settings(self) -> StageConfig:
        """train.<section>: the stage's epochs, learning rate and loss weights."""
        return getattr(self.cfg.train, self.stage.section)

    @property
    def schedule(self) -> str:
        """The stage's rate schedule: train.<section>.schedule, else train.schedule."""
        return self.settings.schedule or self.cfg.train.schedule

    def end_epoch(
        self,
        epoch: int,
        step: int,
        model: RetrievalModel,
        optimizer: torch.optim.Optimizer,
        meter: EpochMeter,
        terms: list[str],
        start: float,
        validation: ValidationSet | None = None,
        reps: np.ndarray | None = None,
    ) -> None:
        """All-reduce the epoch's figures, score the validation images and keep the best epoch (rank 0), report
        them with rank 0's checkpoint, and log them (rank 0)."""
        totals = meter.totals(terms)
        if self.world > 1:  # on the workers' device: NCCL (GPU workers) reduces CUDA tensors only
            totals = totals.to(next(model.parameters()).device)
            dist.all_reduce(totals)
            totals = totals.cpu()
        metrics = epoch_metrics(totals, terms, model.schema.names, time.perf_counter() - start)
        metrics.update(stage=self.stage.number, epoch=epoch, step=step, lr=optimizer.param_groups[0]["lr"])
        if self.rank == 0 and validation is not None:
            with torch_threads(torch.get_num_threads() * self.local_world):  # the others wait in report: idle cores
                metrics.update(self.select(epoch, model, validation, reps))
        with tempfile.TemporaryDirectory() as directory:
            checkpoint = None
            if self.rank == 0:
                state = {
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizer": optimizer.state_dict(),
                    "epoch": epoch,
                    "step": step,
                }
                torch.save(state, os.path.join(directory, "state.pt"))
                checkpoint = ray.train.Checkpoint.from_directory(directory)
            ray.train.report(metrics, checkpoint=checkpoint)  # Ray: metrics, and rank 0's checkpoint kept on storage
        if self.rank == 0:
            line = json.dumps({**metrics, "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
            url = join(self.out, METRICS_FILE)
            previous = self.storage.read_text(url) if self.storage.exists(url) else ""
            self.storage.write_text(url, previous + line + "\n")  # the driver prints it (jobs/epoch_progress.py)

    def select(
        self, epoch: int, model: RetrievalModel, validation: ValidationSet, reps: np.ndarray | None
    ) -> dict[str, float]:
        """Validation figures of this epoch's model; the best epoch's model kept as <stage>.best.pt (rank 0).
        Stage 1 (no representations yet) selects by classifier accuracy, later stages by validation Top-20 of the
        evaluation's manipulations (eval/validation_ranking.py). ``reps``: the fixed validation features of a
        stage on features (stage 3), else they are embedded now."""
        device = next(model.parameters()).device
        figures: dict[str, float] = {}
        scored = model
        if not validation.from_trunk and trained_batch_norms(model, self.cfg.train):
            # scored as the stage's result will be: with statistics re-estimated on plain images (run_stage)
            batches = torch.tensor(validation.memory_inputs).split(self.cfg.train.batch_size)  # a copy: read-only
            scored = reestimate_statistics(copy.deepcopy(model), batches, self.cfg.train)
        if reps is None:
            reps, predicted = validation.embed(scored, validation.inputs, device)
            figures["val_accuracy"] = validation.accuracy(predicted)
        if self.stage.number > 1:
            # stage 3 comes after the memory stage; before it, the training sample's means stand in for the memory
            if self.stage.number < 3:
                scored = validation.with_sample_memory(scored, device)
            top = validation_top_k(scored, reps, validation.labels, k=SELECT_K)
            if top is not None:
                figures[f"val_top{SELECT_K}"] = top
        url = join(self.out, f"{self.stage.name}.selection.json")
        record = json.loads(self.storage.read_text(url)) if self.storage.exists(url) else {}
        # the stage's metric is chosen once, at its first scored epoch: Top-20 where the validation images hold
        # targets of manipulations, else classifier accuracy; an epoch without that figure cannot be the best
        metric = record.get("metric") or (f"val_top{SELECT_K}" if f"val_top{SELECT_K}" in figures else "val_accuracy")
        history = [h for h in record.get("history", []) if h["epoch"] < epoch] + [{"epoch": epoch, **figures}]
        kept = next((h for h in history if h["epoch"] == record.get("best_epoch")), None)
        if better_epoch(figures, kept, metric):  # ties: the better classifier accuracy, then the later epoch
            save_model(model, join(self.out, f"{self.stage.name}.best.pt"), self.storage)
            record.update(best=figures[metric], best_epoch=epoch)
        record.update(metric=metric, history=history)
        self.storage.write_text(url, json.dumps(record, indent=1))
        model.train()
        return figures

    def record_start(self, top: float | None) -> None:
        """The validation Top-20 of the stage's starting model, beside its epochs' (rank 0)."""
        url = join(self.out, f"{self.stage.name}.selection.json")
        record = json.loads(self.storage.read_text(url)) if self.storage.exists(url) else {}
        record.setdefault(f"start_val_top{SELECT_K}", top)
        self.storage.write_text(url, json.dumps(record, indent=1))

    def maybe_fail(self, step: int) -> None:
        """Test only: the last worker dies once at train.fault.stage / train.fault.step."""
        fault, stage = self.cfg.train.fault, self.stage.number
        if fault.stage != stage or fault.step != step or self.rank != self.world - 1:
            return
        marker = join(self.out, FAULT_MARKER.format(stage=stage, step=step))
        if self.storage.exists(marker):
            return
        self.storage.write_text(marker, f"stage {stage} step {step}\n")
        # Ray Train registers a reported checkpoint when its controller next polls the workers: a worker that dies
        # at once may take the last report with it (a real crash can), and then the run resumes one epoch earlier
        # than the test that asks for this fault expects. Let the controller take the report first.
        time.sleep(FAULT_REPORT_GRACE_S)
        os._exit(1)


def stage_loop(config: dict) -> None:
    """A stage on images (the plan's "images" stages): an ordinary PyTorch loop over this worker's share of the
    decoded training split, each batch one step of the stage's kind (local or manipulation)."""
    worker = Worker.current(config)
    cfg, stage = worker.cfg, worker.stage
    settings = worker.settings

    model = model_from_bytes(worker.storage.read_bytes(config["start_url"]))
    frozen = cfg.train.trunk == "frozen"
    params = trainable(model, stage.number, frozen_trunk=frozen)
    optimizer = make_optimizer(params, settings, cfg.train, tuned=model.backbone.tuned().parameters())
    batches, steps_per_epoch = _batches(worker, config)
    schedule = StageSchedule(optimizer, worker.schedule, settings.epochs, steps_per_epoch)  # before the restore
    epoch0, step = _restore(model, optimizer)
    net = ray.train.torch.prepare_model(model)  # Ray: DDP (gloo on CPU, NCCL on GPU) on this worker's device
    device = ray.train.torch.get_device()
    loss_fn = StageLoss(settings, model.variant)
    terms = [t for t in TERMS if t != "g" and loss_fn.needs(t)]
    generator = torch.Generator().manual_seed(cfg.train.seed * 1000 + worker.rank)

    for epoch in range(epoch0, settings.epochs):
        # the heads' dropout draws from torch's global generator, whose state a reused Ray worker process brings
        # from whatever ran there before: seeded per (seed, stage, epoch, rank), a run repeats itself
        torch.manual_seed(
            int(np.random.SeedSequence([cfg.train.seed, stage.number, epoch, worker.rank]).generate_state(1)[0])
        )
        training_mode(model, cfg.train)  # the frozen trunk, or a pretrained trunk's frozen BatchNorm, in eval mode
        meter, start = EpochMeter(len(model.schema.names)), time.perf_counter()
        for i, batch in enumerate(batches(epoch)):
            worker.maybe_fail(step)
            schedule.set(epoch, i)
            images, labels = batch["image"].to(device), batch["labels"].to(device)
            if stage.step == "manipulation":
                loss, stats = manipulation_step(net, model, images, labels, loss_fn, generator, from_trunk=frozen)
            else:
                loss, stats = local_step(net, images, labels, loss_fn, generator, from_trunk=frozen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            meter.add(stats)
            step += 1
        worker.end_epoch(epoch, step, model, optimizer, meter, terms, start, validation=config.get("validation"))


def _batches(worker: Worker, config: dict) -> tuple[Callable[[int], Iterable[dict[str, torch.Tensor]]], int]:
    """(epoch -> this worker's batches, batches per epoch): the frozen trunk's cached maps
    (fsnet/cached_batches.py), or decoded images from the streaming Ray Data pipeline the driver set up, whose
    count per epoch is the even share of the training images (an estimate: Ray Data splits by blocks)."""
    cfg = worker.cfg
    if cfg.train.trunk == "frozen":
        found, arrays = TrunkCache.open(config["trunk_cache"], worker.storage).read(config["fit_ids"], maps=True)
        cached = CachedBatches(
            arrays["maps"], config["fit_labels"][found], cfg.train.batch_size, worker.rank, worker.world, cfg.train.seed
        )
        return (lambda epoch: cached.epoch(epoch, flip=cfg.train.augment.flip)), cached.steps
    shard = ray.train.get_dataset_shard("train")  # Ray: this worker's split of the streaming decode pipeline
    batches = lambda epoch: shard.iter_torch_batches(  # noqa: E731
        batch_size=cfg.train.batch_size,
        drop_last=True,
        local_shuffle_buffer_size=cfg.train.shuffle_buffer or None,
    )
    return batches, config["fit_images"] // worker.world // cfg.train.batch_size


def global_loop(config: dict) -> None:
    """A stage on the fixed features (FashionSearchNet's stage 3, L_G): each worker takes its share of queries."""
    worker = Worker.current(config)
    cfg, rank, world = worker.cfg, worker.rank, worker.world
    settings = worker.settings
    device = ray.train.torch.get_device()

    model = model_from_bytes(worker.storage.read_bytes(config["start_url"]))
    params = trainable(model, worker.stage.number)
    optimizer = make_optimizer(params, settings, cfg.train)
    names, num_values = model.schema.names, model.schema.num_values
    fs, path = worker.storage.arrow_fs(join(config["out"], "features"))
    table = pads.dataset(path, filesystem=fs, format="parquet").to_table(
        columns=["id", "reps", *names], filter=pads.field("error").is_null()
    )
    table = table.sort_by("id")  # the embed pool wrote rows as its actors finished: one order, so a seed repeats
    reps = torch.from_numpy(column_array(table, "reps", (len(names), cfg.model.embed_dim))).to(device)  # (N, A, D)
    labels = np.stack([table[a].to_numpy() for a in names], axis=1)
    sampler = GlobalTripletSampler(labels, num_values)
    complete = np.flatnonzero((labels >= 0).all(axis=1))
    loss_fn = StageLoss(settings, model.variant)
    steps_per_epoch = max(1, len(complete) // (world * cfg.train.global_batch))  # equal on every worker
    schedule = StageSchedule(optimizer, worker.schedule, settings.epochs, steps_per_epoch)  # before the restore
    epoch0, step = _restore(model, optimizer)
    model.to(device)
    validation = config.get("validation")
    val_reps = None
    if validation is not None and rank == 0:  # the starting point the epochs are compared with
        val_reps = validation.embed(model, validation.inputs, device)[0]
        worker.record_start(validation_top_k(model, val_reps, validation.labels, k=SELECT_K))

    for epoch in range(epoch0, settings.epochs):
        model.train()
        rng = np.random.default_rng([cfg.train.seed, epoch])
        mine = rng.permutation(complete)[rank::world]
        worker_rng = np.random.default_rng([cfg.train.seed, epoch, rank])
        meter, start = EpochMeter(len(names)), time.perf_counter()
        for i in range(steps_per_epoch):
            worker.maybe_fail(step)
            schedule.set(epoch, i)
            queries = mine[i * cfg.train.global_batch : (i + 1) * cfg.train.global_batch]
            loss, stats = global_step(model, reps, sampler, queries, worker_rng, loss_fn, negatives=cfg.train.negatives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if world > 1:  # the few stage-3 parameters: average their gradients by hand instead of wrapping in DDP
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce(p.grad)
                    p.grad /= world
            optimizer.step()
            meter.add(stats)
            step += 1
        worker.end_epoch(epoch, step, model, optimizer, meter, ["g"], start, validation, val_reps)


def _restore(model: RetrievalModel, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """(first epoch, step) to run: from this stage's last checkpoint after a worker restart or a re-run."""
    checkpoint = ray.train.get_checkpoint()  # Ray: the latest checkpoint reported by this stage's run, if any
    if checkpoint is None:
        return 0, 0
    with checkpoint.as_directory() as directory:
        state = torch.load(os.path.join(directory, "state.pt"), map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"] + 1, state["step"]


# ----- checks and display --------------------------------------------------------------------------------------
def _check_run_dir(cfg: Config, storage: Storage, out: str) -> None:
    """A re-run must train the same model: refuse an --out that holds another model config."""
    url = join(out, "config.yaml")
    if not storage.exists(url):
        return
    saved_cfg = yaml.safe_load(storage.read_text(url))
    # the model's own keys, and the training keys that decide which weights a finished stage holds (a frozen
    # trunk's stage 1 is not a fine-tuned one's, and the other way round)
    saved = {f"model.{k}": v for k, v in saved_cfg.get("model", {}).items()}
    train_keys = [k for k in RUN_DEFINING_TRAIN_KEYS if k in saved_cfg.get("train", {})]  # a run older than the key
    saved.update({f"train.{k}": saved_cfg["train"][k] for k in train_keys})
    current = {f"model.{k}": v for k, v in cfg.model.model_dump(mode="json").items()}
    current.update({f"train.{k}": getattr(cfg.train, k) for k in train_keys})
    changed = [k for k in current if saved.get(k) != current[k]]
    if changed:
        shown = ", ".join(f"{k}: {saved.get(k)!r} there, {current[k]!r} now" for k in changed)
        raise ConfigError(
            f"{out} holds a run of another model ({shown}); resume it with its config or use another --out"
        )


def _check_resources(cfg: Config) -> None:
    """Ray Train reserves the workers' CPUs; the decode tasks that feed them need some left, or the run hangs."""
    cpus = cluster_cpus()
    if cfg.train.workers * cfg.train.cpus_per_worker + FREE_CPUS > cpus:
        raise ConfigError(
            f"train.workers x train.cpus_per_worker = {cfg.train.workers} x {cfg.train.cpus_per_worker} leaves less "
            f"than {FREE_CPUS:g} of the cluster's {cpus} CPUs for the read and decode tasks that feed them; lower one "
            "of them"
        )


def _check_tuned_blocks(cfg: Config) -> None:
    if cfg.train.tuned_blocks and cfg.train.trunk != "frozen":
        raise ConfigError(
            f"train.tuned_blocks={cfg.train.tuned_blocks} with train.trunk={cfg.train.trunk}: tuned blocks are the "
            "part of a frozen trunk that trains (the rest read from the cache); a fine-tuned trunk trains all of them. "
            "Set train.trunk=frozen or train.tuned_blocks=0"
        )


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
