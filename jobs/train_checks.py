"""What ``fsnet train`` refuses before it starts, each in one line that says what to change: an --out holding a run of
another model, more workers than the cluster's CPUs can feed, tuned blocks or a probe expert without a frozen trunk."""

from __future__ import annotations

import yaml

from fsnet.config import Config
from fsnet.errors import ConfigError
from fsnet.storage import Storage, join
from jobs.ray_runtime import cluster_cpus

FREE_CPUS = 1.0  # what the workers must leave: Ray Data's file-listing task takes a whole CPU, else the run hangs
RUN_DEFINING_TRAIN_KEYS = ("trunk", "tuned_blocks", "batch_norm")  # with the model's keys: what a resumed --out keeps


def check_run_dir(cfg: Config, storage: Storage, out: str) -> None:
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


def check_resources(cfg: Config) -> None:
    """Ray Train reserves the workers' CPUs; the decode tasks that feed them need some left, or the run hangs."""
    cpus = cluster_cpus()
    if cfg.train.workers * cfg.train.cpus_per_worker + FREE_CPUS > cpus:
        raise ConfigError(
            f"train.workers x train.cpus_per_worker = {cfg.train.workers} x {cfg.train.cpus_per_worker} leaves less "
            f"than {FREE_CPUS:g} of the cluster's {cpus} CPUs for the read and decode tasks that feed them; lower one "
            "of them"
        )


def check_tuned_blocks(cfg: Config) -> None:
    if cfg.train.tuned_blocks and cfg.train.trunk != "frozen":
        raise ConfigError(
            f"train.tuned_blocks={cfg.train.tuned_blocks} with train.trunk={cfg.train.trunk}: tuned blocks are the "
            "part of a frozen trunk that trains (the rest read from the cache); a fine-tuned trunk trains all of them. "
            "Set train.trunk=frozen or train.tuned_blocks=0"
        )


def check_probe_expert(cfg: Config) -> None:
    if cfg.train.probe_expert and cfg.train.trunk != "frozen":
        raise ConfigError(
            f"train.probe_expert=true with train.trunk={cfg.train.trunk}: the probe reads the frozen trunk's cached "
            "features; set train.trunk=frozen or train.probe_expert=false"
        )
