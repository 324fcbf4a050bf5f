"""Model throughput: forward (embed: features, AAM boxes, ROI heads) images/s per backbone at 96 and 224 px,
and the AAM -> box step per image (the paper: about 0.002 s per image for ROI extraction).

    python bench/model_bench.py [--batch 32] [--seconds 4] [--out PATH]

CPU figures use torch's threads on this machine. On a CUDA machine a GPU section runs too: fp16 autocast and
channels_last, the way the index job runs the model. Writes its figures to bench/results/model_bench.json
(bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from fsnet.catalog.schema import Attribute, AttributeSchema
from fsnet.config import load_config
from fsnet.model import build_model
from fsnet.model.backbone import BACKBONES
from fsnet.model.localization import boxes_from_maps

try:  # run as a script: bench/ is on sys.path
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.model_bench
    from bench.record import Table, add_record_options, write_result

# fashion-product-small's 7 attributes and their value counts
SCHEMA = AttributeSchema(
    attributes=[
        Attribute(name=f"a{i}", values=[str(v) for v in range(n)]) for i, n in enumerate([5, 7, 45, 132, 46, 4, 8])
    ]
)


def rate(fn, batch: int, seconds: float, sync=lambda: None) -> float:
    fn()  # warm-up
    sync()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        done += batch
    sync()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=4.0)
    add_record_options(parser, "model_bench")
    args = parser.parse_args()
    rows = []
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} "
        "threads"
    )
    print(
        "model: default.yaml sizes (conv5 384, conv6/7 512, fc9 512, fc10 256, roi 6), variant full_ff, 7 attributes\n"
    )

    print(f"{'backbone':14s} {'96 px img/s':>12s} {'224 px img/s':>13s}")
    for name in [b for b in BACKBONES if b != "tiny"] + ["tiny"]:
        cfg = load_config(sets=[f"model.backbone={name}", "model.weights=none", "model.variant=full_ff"]).model
        model = build_model(cfg, SCHEMA).eval()
        row = []
        for size in (96, 224):
            images = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8)
            with torch.inference_mode():
                row.append(rate(lambda: model.embed(images), args.batch, args.seconds))
        print(f"{name:14s} {row[0]:12,.0f} {row[1]:13,.0f}")
        rows.append([name, round(row[0]), round(row[1])])

    # AAM -> box: smooth random maps of conv5 size at 224 px (13 x 13), all 7 attributes of an image.
    maps = torch.nn.functional.avg_pool2d(torch.randn(args.batch * 7, 1, 17, 17), 5, stride=1).view(
        args.batch, 7, 13, 13
    )
    per_second = rate(lambda: boxes_from_maps(maps, 0.2), args.batch, args.seconds)
    print(
        f"\nAAM -> boxes (7 attributes, 13x13 maps, batch {args.batch}): {1e3 / per_second:.3f} ms per image "
        f"({per_second:,.0f} images/s); the paper: ~2 ms per image"
    )
    tables = [
        Table(
            "main",
            ["backbone", "96 px, images/s", "224 px, images/s"],
            rows,
            f"embed images/s per backbone (default.yaml sizes, variant full_ff, 7 attributes, batch {args.batch}, "
            "weights none)",
        ),
        Table(
            "aam",
            ["measurement", "figure"],
            [
                ["AAM → boxes, 7 attributes on 13×13 maps", f"{1e3 / per_second:.2f} ms per image"],
                ["the paper's ROI extraction, for comparison", "~2 ms per image"],
            ],
            "AAM → boxes",
        ),
    ]

    if torch.cuda.is_available():
        device = torch.device("cuda")
        print(f"\nGPU: {torch.cuda.get_device_name(0)} (fp16 autocast, channels_last, batch 256)")
        gpu_rows = []
        for name in ("alexnet", "mobilenet_v2", "resnet50"):
            cfg = load_config(sets=[f"model.backbone={name}", "model.weights=none", "model.variant=full_ff"]).model
            model = build_model(cfg, SCHEMA).eval().to(device).to(memory_format=torch.channels_last)
            images = torch.randint(0, 256, (256, 3, 224, 224), dtype=torch.uint8, device=device).contiguous(
                memory_format=torch.channels_last
            )

            def step():
                with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
                    model.embed(images)

            gpu_rate = rate(step, 256, args.seconds, torch.cuda.synchronize)
            print(f"  {name:14s} 224 px: {gpu_rate:,.0f} img/s")
            gpu_rows.append([name, round(gpu_rate)])
        tables.append(
            Table(
                "gpu",
                ["backbone", "224 px, images/s"],
                gpu_rows,
                f"{torch.cuda.get_device_name(0)}: fp16 autocast, channels_last, batch 256",
            )
        )
    write_result(
        args,
        "model_bench",
        "Forward (embed: features, AAM boxes, ROI heads) images/s per backbone; AAM → boxes per image",
        tables,
        notes=[f"torch on {torch.get_num_threads()} threads."],
    )


if __name__ == "__main__":
    main()
