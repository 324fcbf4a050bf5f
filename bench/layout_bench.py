"""The activations' memory layout: plain NCHW against channels-last (NHWC), side by side in one run, for what fsnet
runs on a CPU: a training step of stage 1 and of stage 2 on cached trunk maps (one torch thread, as a Ray Train
worker of one CPU runs it), and the embed actors' model on cached maps and on decoded images (two threads, as
jobs/embed_rows.py lets the one actor of a 2-core machine run), the last also with the trunk's batch norms folded
as the embed actors run it. The cpu_mobilenet96 model with its tuned blocks; each way's largest difference to the
plain layout's outputs.

    python bench/layout_bench.py [--batch 64] [--embed-batch 256] [--seconds 6] [--out PATH]

Writes its figures to bench/results/layout_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import copy
import os
import platform

import torch

from fsnet.config import load_config
from fsnet.losses import StageLoss
from fsnet.model import build_model
from fsnet.training import local_step, make_optimizer, trainable
from fsnet.trunk_features import fold_batch_norms

try:  # run as a script: bench/ is on sys.path
    from model_bench import SCHEMA, rate  # fashion-product-small's 7 attributes; images/s of a callable
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.layout_bench
    from bench.model_bench import SCHEMA, rate
    from bench.record import Table, add_record_options, write_result

LAYOUTS = {"NCHW": torch.contiguous_format, "channels_last": torch.channels_last}


def training_step(model, stage: int, cfg, maps: torch.Tensor, labels: torch.Tensor, layout):
    """A stage's step (forward, backward, SGD) on a copy of ``model`` in ``layout``; returns (step, first loss)."""
    model = copy.deepcopy(model).to(memory_format=layout).train()
    model.backbone.cached().eval()
    settings = getattr(cfg.train, f"stage{stage}")
    params = trainable(model, stage, frozen_trunk=True)
    optimizer = make_optimizer(params, settings, cfg.train, tuned=model.backbone.tuned().parameters())
    loss_fn = StageLoss(settings, model.variant)
    x = maps.contiguous(memory_format=layout)
    generator = torch.Generator()

    def step():
        generator.manual_seed(0)
        torch.manual_seed(0)  # the heads' dropout: the same masks in both layouts
        loss, _ = local_step(model, x, labels, loss_fn, generator, from_trunk=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    torch.manual_seed(0)
    generator.manual_seed(0)
    first, _ = local_step(model, x, labels, loss_fn, generator, from_trunk=True)
    return step, first.detach().reshape(1)


def embedding(model, x: torch.Tensor, from_trunk: bool, layout, folded: bool = False):
    """The embed actors' call (attribute representations, predictions, F) on a copy of ``model`` in ``layout``;
    ``folded``: images through the trunk's cached blocks with batch norms folded first, as EmbedImages runs them."""
    model = copy.deepcopy(model).to(memory_format=layout).eval()
    x = x.contiguous(memory_format=layout)
    trunk = fold_batch_norms(copy.deepcopy(model.backbone.cached()).eval()) if folded else None

    def embed():
        with torch.inference_mode():
            if trunk is None:
                emb = model.embed(x, from_trunk=from_trunk)
            else:
                emb = model.embed(trunk(model.normalize(x)), from_trunk=True)
            return model.global_representation(emb.reps)

    return embed, embed()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)  # train.batch_size
    parser.add_argument("--embed-batch", type=int, default=256)  # index.batch_size
    parser.add_argument("--seconds", type=float, default=6.0)
    add_record_options(parser, "layout_bench")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    cfg = load_config(["cpu_mobilenet96"], ["model.variant=full"])
    torch.manual_seed(0)
    model = build_model(cfg.model, SCHEMA)  # the ImageNet weights where they are, as a run has them
    model.backbone.set_tuned_blocks(cfg.train.tuned_blocks)
    size = cfg.model.image_size
    images = torch.randint(0, 256, (args.embed_batch, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        maps = model.backbone.cached()(model.normalize(images))  # (E, 160, 6, 6) the cache's maps
    labels = torch.stack([torch.randint(0, v, (args.batch,)) for v in SCHEMA.num_values], dim=1)
    print(
        f"model: cpu_mobilenet96, tuned blocks {cfg.train.tuned_blocks}, batches of {args.batch} (training) and "
        f"{args.embed_batch} (embedding), maps {tuple(maps.shape[1:])}\n"
    )

    cases = [  # (what, torch threads, batch, layout -> (callable, output))
        (
            "stage-1 step on cached maps",
            1,
            args.batch,
            lambda layout: training_step(model, 1, cfg, maps[: args.batch], labels, layout),
        ),
        (
            "stage-2 step on cached maps",
            1,
            args.batch,
            lambda layout: training_step(model, 2, cfg, maps[: args.batch], labels, layout),
        ),
        ("embed on cached maps", 2, args.embed_batch, lambda layout: embedding(model, maps, True, layout)),
        (f"embed on {size} px images", 2, args.embed_batch, lambda layout: embedding(model, images, False, layout)),
        (  # the NCHW side as above; the other: channels-last and the batch norms folded, the embed actors' way
            f"embed on {size} px images, BN folded",
            2,
            args.embed_batch,
            lambda layout: embedding(model, images, False, layout, folded=layout == torch.channels_last),
        ),
    ]
    rows = []
    print(f"{'what':36s} {'threads':>7s} {'NCHW img/s':>11s} {'NHWC img/s':>11s} {'ratio':>6s} {'max diff':>9s}")
    for what, threads, batch, make in cases:
        torch.set_num_threads(threads)
        made = {name: make(layout) for name, layout in LAYOUTS.items()}
        figures = {name: rate(fn, batch, args.seconds) for name, (fn, _) in made.items()}
        plain, nhwc = made["NCHW"][1], made["channels_last"][1]
        diff = float((plain - nhwc).abs().max() / plain.abs().max().clamp(min=1e-12))
        ratio = figures["channels_last"] / figures["NCHW"]
        print(
            f"{what:36s} {threads:7d} {figures['NCHW']:11,.0f} {figures['channels_last']:11,.0f} {ratio:5.2f}x "
            f"{diff:9.1e}"
        )
        rows.append(
            [
                what,
                str(threads),
                round(figures["NCHW"]),
                round(figures["channels_last"]),
                f"{ratio:.2f}×",
                f"{diff:.1e}",
            ]
        )
    write_result(
        args,
        "layout_bench",
        "The activations' memory layout: NCHW against channels-last",
        [
            Table(
                "main",
                ["what", "torch threads", "NCHW images/s", "channels-last images/s", "ratio", "max difference"],
                rows,
            )
        ],
        notes=[
            f"The cpu_mobilenet96 model (ImageNet MobileNetV2, tuned blocks {cfg.train.tuned_blocks}, variant full) "
            f"on batches of {args.batch} (training) and {args.embed_batch} (embedding), side by side in one run. "
            "Max difference: the largest difference of the outputs (a step's first loss; the embedding's F) "
            "relative to the plain layout's largest. The last row's channels-last side also folds the trunk's batch "
            "norms into its convolutions (fsnet/embedding.py), against the same plain NCHW model."
        ],
    )


if __name__ == "__main__":
    main()
