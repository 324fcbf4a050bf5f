"""ROI pooling in stage 2: torchvision's roi_align against fsnet's product form (fsnet/model/roi_align.py), side by
side in one run: a whole stage-2 step (forward, backward, SGD) of the cpu_mobilenet96 model on cached trunk maps,
and the pooling alone (forward + backward), images/s at 1 and 2 torch threads.

    python bench/roi_bench.py [--batch 64] [--seconds 6] [--out PATH]

Writes its figures to bench/results/roi_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import os
import platform
from contextlib import contextmanager

import torch
import torchvision

import fsnet.model.heads as heads
from fsnet.config import load_config
from fsnet.losses import StageLoss
from fsnet.model import build_model
from fsnet.model.roi_align import roi_align
from fsnet.training import local_step, make_optimizer, trainable

try:  # run as a script: bench/ is on sys.path
    from model_bench import SCHEMA, rate  # fashion-product-small's 7 attributes; images/s of a callable
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.roi_bench
    from bench.model_bench import SCHEMA, rate
    from bench.record import Table, add_record_options, write_result


def torchvision_roi_align(conv5: torch.Tensor, boxes: torch.Tensor, output_size: int, sampling_ratio: int = 2):
    """What the heads ran before: torchvision's op on (batch index, box) rows, the same layout out."""
    b, a = boxes.shape[:2]
    index = torch.arange(b, dtype=conv5.dtype).repeat_interleave(a)[:, None]
    rois = torch.cat([index, boxes.reshape(b * a, 4).to(conv5.dtype)], dim=1)
    pooled = torchvision.ops.roi_align(conv5, rois, output_size, 1.0, sampling_ratio, aligned=True)
    return pooled.reshape(b, a, -1)


@contextmanager
def pooling(fn):
    """The heads' ROI pooling replaced by ``fn`` for the block."""
    saved, heads.roi_align = heads.roi_align, fn
    try:
        yield
    finally:
        heads.roi_align = saved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=6.0)
    add_record_options(parser, "roi_bench")
    args = parser.parse_args()
    rows = []
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    cfg = load_config(["cpu_mobilenet96"], ["model.weights=none", "model.variant=full"])
    print(
        f"model: cpu_mobilenet96, variant full (localization), roi {cfg.model.roi_size}, batch {args.batch} of cached "
        "trunk maps (320 x 6 x 6)\n"
    )
    torch.manual_seed(0)
    model = build_model(cfg.model, SCHEMA).train()
    optimizer = make_optimizer(trainable(model, 2, frozen_trunk=True), cfg.train.stage2, cfg.train)
    loss_fn = StageLoss(cfg.train.stage2, model.variant)
    maps = torch.randn(args.batch, 320, 6, 6).relu()
    labels = torch.stack([torch.randint(0, v, (args.batch,)) for v in SCHEMA.num_values], dim=1)

    def step():
        loss, _ = local_step(model, maps, labels, loss_fn, from_trunk=True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    conv5 = torch.randn(args.batch, cfg.model.conv5_channels, 6, 6, requires_grad=True)
    x = torch.rand(args.batch, len(SCHEMA.num_values), 2) * 6
    boxes = torch.cat(
        [x.min(-1, keepdim=True).values.expand(-1, -1, 2), x.max(-1, keepdim=True).values.expand(-1, -1, 2)], 2
    )

    def pool(fn):
        return lambda: fn(conv5, boxes, cfg.model.roi_size).sum().backward()

    print(f"{'threads':>7s} {'what':22s} {'torchvision img/s':>18s} {'product img/s':>14s} {'ratio':>6s}")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        figures = {}
        for name, fn in (("torchvision", torchvision_roi_align), ("product", roi_align)):
            with pooling(fn):
                figures[("step", name)] = rate(step, args.batch, args.seconds)
            figures[("pool", name)] = rate(pool(fn), args.batch, args.seconds)
        for what, label in (("step", "stage-2 step"), ("pool", "pooling fwd + bwd")):
            old, new = figures[(what, "torchvision")], figures[(what, "product")]
            print(f"{threads:7d} {label:22s} {old:18,.0f} {new:14,.0f} {new / old:5.2f}x")
            rows.append([str(threads), label, round(old), round(new), f"{new / old:.2f}×"])
    write_result(
        args,
        "roi_bench",
        "ROI pooling: torchvision's roi_align against fsnet's batched product form",
        [Table("main", ["torch threads", "what", "torchvision images/s", "product images/s", "ratio"], rows)],
        notes=[
            f"The cpu_mobilenet96 model, variant full, on batches of {args.batch} cached trunk maps (320×6×6), side "
            "by side in one run."
        ],
    )


if __name__ == "__main__":
    main()
