"""Stage-2 training throughput: Ray Train (Ray Data decode + get_dataset_shard + DDP wrapper, checkpoint per
epoch) against a plain PyTorch loop with the same model, batches, decode and step
(fsnet.training.image_step, channels-last as the loop runs it), measured side by side in one run.

    python bench/train_bench.py [--backbone mobilenet_v2] [--size 96] [--n 1600] [--epochs 3] [--batch 32] [--out PATH]

Both sides get the same compute: one Ray Train worker holding one CPU (torch then runs one thread; Ray Data decodes
on the other CPU) against the plain loop on one torch thread decoding inline. On a CUDA machine both run on the GPU.
Epoch 0 of Ray Train includes starting the data pipeline; the steady-state ratio uses the later epochs.
Writes its figures to bench/results/train_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import ray
import torch

from fsnet.catalog.reader import Catalog
from fsnet.config import load_config
from fsnet.losses import StageLoss
from fsnet.model import build_model, save_model
from fsnet.storage import Storage, join
from fsnet.training import decode_for_training, image_step, in_training_layout, make_optimizer, trainable
from jobs.pack import pack
from jobs.synth import synth
from jobs.train import run_stage, training_plan
from jobs.training_split import TrainingSplit

try:  # run as a script: bench/ is on sys.path
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.train_bench
    from bench.record import Table, add_record_options, write_result


def plain_loop(cfg, catalog: Catalog, init_state: dict, epochs: int, device: torch.device) -> list[float]:
    """The same stage-2 work without Ray: images/s per epoch."""
    names = catalog.schema.names
    rows = {
        k: np.concatenate([b[k] for b in catalog.batches("train", ["image", *names], batch_size=1024)])
        for k in ["image", *names]
    }
    model = build_model(cfg.model, catalog.schema, pretrained=False)
    model.load_state_dict(init_state)
    model = in_training_layout(model.to(device)).train()  # the layout the training loop runs
    optimizer = make_optimizer(trainable(model, 2), cfg.train.stage2, cfg.train)
    loss_fn = StageLoss(cfg.train.stage2, model.variant)
    rates = []
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(rows["image"]))
        start, images = time.perf_counter(), 0
        for i in range(0, len(order) - cfg.train.batch_size + 1, cfg.train.batch_size):
            idx = order[i : i + cfg.train.batch_size]
            batch = decode_for_training(
                {k: v[idx] for k, v in rows.items()},
                size=cfg.model.image_size,
                augment=cfg.train.augment,
                attributes=names,
            )
            x, y = torch.from_numpy(batch["image"]).to(device), torch.from_numpy(batch["labels"]).to(device)
            images += image_step("local", model, model, x, y, loss_fn, optimizer).images
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(images / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--n", type=int, default=1600)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    add_record_options(parser, "train_bench")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    sets = [
        f"synthetic.n={args.n}",
        f"synthetic.size={args.size}",
        f"model.backbone={args.backbone}",
        "model.weights=none",
        f"model.image_size={args.size}",
        "model.roi_size=4",
        "model.variant=full",
        "train.workers=1",
        "train.cpus_per_worker=1",
        f"train.use_gpu={str(gpu).lower()}",
        f"train.batch_size={args.batch}",
        f"train.stage2.epochs={args.epochs}",
    ]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{'GPU ' + torch.cuda.get_device_name(0) if gpu else 'no GPU'}, "
        f"torch {torch.__version__}, ray {ray.__version__}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=True, logging_level="ERROR")
        cfg = load_config(["synthetic"], sets)
        synth(cfg, f"{tmp}/synth", show_progress=False)
        pack(load_config(["synthetic"], [*sets, f"source.path={tmp}/synth"]), f"{tmp}/catalog", show_progress=False)
        storage = Storage(cfg.storage)
        catalog = Catalog.open(f"{tmp}/catalog", storage)
        torch.manual_seed(0)
        init = build_model(cfg.model, catalog.schema)
        save_model(init, f"{tmp}/run/init.pt", storage)
        n_train = len(catalog.split_ids("train"))
        print(
            f"stage 2 of {args.backbone} at {args.size} px, batch {args.batch}, {n_train:,} training images, "
            f"{args.epochs} epochs\n"
        )

        start = time.perf_counter()
        stage2 = next(s for s in training_plan(cfg) if s.name == "stage2")
        run_stage(cfg, TrainingSplit.of(cfg, catalog), storage, f"{tmp}/run", stage2, f"{tmp}/run/init.pt")
        ray_wall = time.perf_counter() - start
        lines = [json.loads(x) for x in storage.read_text(join(f"{tmp}/run", "train_metrics.jsonl")).splitlines()]
        ray_rates = [m["images_per_s"] for m in lines if m["stage"] == 2]
        ray_images = sum(m["images"] for m in lines if m["stage"] == 2)
        ray.shutdown()

        torch.set_num_threads(1 if not gpu else torch.get_num_threads())
        start = time.perf_counter()
        plain_rates = plain_loop(cfg, catalog, init.state_dict(), args.epochs, device)
        plain_wall = time.perf_counter() - start

    print(f"{'epoch':>5s} {'Ray Train img/s':>16s} {'plain loop img/s':>17s}")
    for e, (r, p) in enumerate(zip(ray_rates, plain_rates)):
        print(f"{e:5d} {r:16.1f} {p:17.1f}")
    steady_ray, steady_plain = np.mean(ray_rates[1:] or ray_rates), np.mean(plain_rates[1:] or plain_rates)
    print(
        f"\nsteady state (epochs 1+): Ray Train {steady_ray:.1f} img/s, plain {steady_plain:.1f} img/s, "
        f"Ray Train / plain = {steady_ray / steady_plain:.2f} ({(1 - steady_ray / steady_plain) * 100:+.0f}% overhead)"
    )
    print(
        f"whole stage incl. start-up: Ray Train {ray_wall:.1f} s for {ray_images:,.0f} images, plain {plain_wall:.1f} s"
    )
    write_result(
        args,
        "train_bench",
        "Stage 2: one Ray Train worker against a plain PyTorch loop",
        [
            Table(
                "main",
                ["epoch", "Ray Train images/s", "plain loop images/s"],
                [[str(e), round(r, 1), round(p, 1)] for e, (r, p) in enumerate(zip(ray_rates, plain_rates))],
                "images/s per epoch",
            ),
            Table(
                "summary",
                ["measurement", "Ray Train", "plain loop"],
                [
                    ["steady state (epochs 1+), images/s", f"{steady_ray:.1f}", f"{steady_plain:.1f}"],
                    ["overhead of Ray Train, steady state", f"{(1 - steady_ray / steady_plain) * 100:.0f}%", ""],
                    ["the whole stage with start-up", f"{ray_wall:.0f} s", f"{plain_wall:.0f} s"],
                ],
                "steady state and the whole stage",
            ),
        ],
        notes=[
            f"Stage 2 of {args.backbone} at {args.size} px, batch {args.batch}, {n_train:,} training images, "
            f"{args.epochs} epochs; one Ray Train worker holding one CPU against a plain PyTorch loop with the same "
            "model, batches and decode, in one run. Epoch 0 pays for starting the data pipeline."
        ],
    )


if __name__ == "__main__":
    main()
