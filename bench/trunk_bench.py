"""The trunk pass (jobs/trunk_cache.py): the frozen pretrained trunk over every catalog image, images/s of its parts
and of ways to run the trunk, side by side in one run on real JPEG bytes: decode + resize, then the trunk in eval
mode as computed before (NCHW, batch 64), channels_last, batch norm folded into the convolutions, both, and both at
batches of 32, 16 and 128; each way's largest difference to the first one's maps.

    python bench/trunk_bench.py [--images ../shared/data/fashion-product-small/images] [--n 1024]
                                [--backbone mobilenet_v2] [--size 96] [--seconds 6] [--threads 2] [--out PATH]

Writes its figures to bench/results/trunk_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import glob
import os
import platform

import torch

from fsnet.config import load_config
from fsnet.decode import decode_or_reject, resize_batch
from fsnet.model.backbone import ImageNetNormalize
from fsnet.trunk_features import fold_batch_norms, frozen_trunk

try:  # run as a script: bench/ is on sys.path
    from model_bench import rate
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.trunk_bench
    from bench.model_bench import rate
    from bench.record import Table, add_record_options, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--images", default=os.path.join(os.path.dirname(__file__), "../../shared/data/fashion-product-small/images")
    )
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    add_record_options(parser, "trunk_bench")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    files = sorted(glob.glob(os.path.join(args.images, "*.jpg")))[: args.n]
    if not files:
        raise SystemExit(f"no .jpg files in {args.images}")
    blobs = [open(f, "rb").read() for f in files]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} threads")
    print(f"{len(blobs)} JPEGs from {os.path.abspath(args.images)}; {args.backbone} trunk at {args.size} px\n")

    model = load_config([], [f"model.backbone={args.backbone}", "model.weights=imagenet"]).model
    normalize = ImageNetNormalize()
    decoded, errors = decode_or_reject(blobs)
    images = resize_batch([d for d in decoded if d is not None], args.size)  # (n, 3, S, S) uint8
    n = len(images)

    def decode_resize(batch: int):
        return lambda: resize_batch(decode_or_reject(blobs[:batch])[0], args.size)

    print(f"{'what':42s} {'img/s':>8s} {'ratio':>6s} {'max |diff|':>11s}")
    decode_rate = rate(decode_resize(64), 64, args.seconds)
    print(f"{'decode + resize (64 per call)':42s} {decode_rate:8,.0f}")
    rows = [["decode + resize, 64 per call", round(decode_rate), None, None]]

    plain = frozen_trunk(model)
    folded = fold_batch_norms(frozen_trunk(model))
    with torch.inference_mode():
        reference = plain(normalize(images[:64])).float()  # (64, C, h, w)
    ways = [
        ("trunk, NCHW, batch 64 (before)", plain, False, 64),
        ("trunk, channels_last, batch 64", plain, True, 64),
        ("trunk, BN folded, batch 64", folded, False, 64),
        ("trunk, BN folded + channels_last, batch 64", folded, True, 64),
        ("trunk, BN folded + channels_last, batch 32", folded, True, 32),
        ("trunk, BN folded + channels_last, batch 16", folded, True, 16),
        ("trunk, BN folded + channels_last, batch 128", folded, True, 128),
    ]
    first = None
    for name, trunk, channels_last, batch in ways:
        trunk = trunk.to(memory_format=torch.channels_last) if channels_last else trunk
        x = normalize(images[: min(batch, n)])
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x

        def forward(trunk=trunk, x=x):
            with torch.inference_mode():
                return trunk(x)

        per_second = rate(forward, len(x), args.seconds)
        first = first or per_second
        with torch.inference_mode():
            diff = (forward()[:16].float() - reference[:16]).abs().max().item()
        print(f"{name:42s} {per_second:8,.0f} {per_second / first:5.2f}x {diff:11.2e}")
        rows.append([name, round(per_second), f"{per_second / first:.2f}×", f"{diff:.1e}"])
    write_result(
        args,
        "trunk_bench",
        "The frozen trunk pass: decode + resize, and ways to run the trunk",
        [Table("main", ["what", "images/s", "ratio", "max difference"], rows)],
        notes=[
            f"{len(blobs):,} JPEGs from {os.path.basename(os.path.abspath(os.path.join(args.images, '..')))}, the "
            f"ImageNet {args.backbone} trunk at {args.size} px, {args.threads} torch threads, side by side in one run. "
            "Ratio: images/s against the plain trunk (NCHW, batch 64). Max difference: the largest difference to the "
            "plain trunk's maps."
        ],
    )


if __name__ == "__main__":
    main()
