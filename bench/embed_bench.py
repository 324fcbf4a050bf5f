"""The embed actors' model on cached trunk maps (index, memory features, evaluate's queries) at 1 and 2 torch threads,
side by side in one run: the cpu_mobilenet96 model (tuned blocks 16-17, conv5-conv7, heads, F) on 160 x 6 x 6
maps, images/s. Ray gives an actor of one CPU one torch thread; on a 2-core machine the pool is one actor, and the
read tasks beside it take little CPU, so jobs/embed_rows.py lets the actor's torch use both cores.

    python bench/embed_bench.py [--batch 256] [--seconds 6] [--out PATH]

Writes its figures to bench/results/embed_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import os
import platform

import torch

from fsnet.config import load_config
from fsnet.model import build_model

try:  # run as a script: bench/ is on sys.path
    from model_bench import SCHEMA, rate  # fashion-product-small's 7 attributes; images/s of a callable
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.embed_bench
    from bench.model_bench import SCHEMA, rate
    from bench.record import Table, add_record_options, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)  # index.batch_size
    parser.add_argument("--seconds", type=float, default=6.0)
    add_record_options(parser, "embed_bench")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    cfg = load_config(["cpu_mobilenet96"], ["model.weights=none", "model.variant=full"])
    torch.manual_seed(0)
    model = build_model(cfg.model, SCHEMA, pretrained=False).eval()
    model.backbone.set_tuned_blocks(cfg.train.tuned_blocks)
    maps = model.backbone.cached()(torch.rand(1, 3, cfg.model.image_size, cfg.model.image_size)).shape[1:]
    x = torch.rand(args.batch, *maps)  # (B, 160, 6, 6) as the cache holds them (fp16 there, float here)
    print(f"model: cpu_mobilenet96, tuned blocks {cfg.train.tuned_blocks}, batch {args.batch} of {tuple(maps)} maps\n")

    def embed():
        with torch.no_grad():
            emb = model.embed(x, from_trunk=True)
            model.global_representation(emb.reps)

    rates = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rates[threads] = rate(embed, args.batch, args.seconds)
        print(f"{threads} thread(s): {rates[threads]:,.0f} images/s")
    print(f"\n2 threads / 1: {rates[2] / rates[1]:.2f}x")
    write_result(
        args,
        "embed_bench",
        "The embed actors' model on cached trunk maps at 1 and 2 torch threads",
        [
            Table(
                "main",
                ["torch threads", "images/s"],
                [["1", round(rates[1])], ["2", round(rates[2])], ["ratio 2 / 1", f"{rates[2] / rates[1]:.2f}×"]],
            )
        ],
        notes=[
            f"The cpu_mobilenet96 model with its {cfg.train.tuned_blocks} tuned blocks on {tuple(maps)} maps, batch "
            f"{args.batch}, side by side in one run."
        ],
    )


if __name__ == "__main__":
    main()
