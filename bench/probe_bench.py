"""The probe's fit (eval/linear_probe.py) with its attributes fitted one at a time and two at once, side by side in
one run, on features shaped like fashion-product-small's (16,000 fit and 1,800 validation images, 320 pooled
MobileNetV2 features, 7 attributes of 4-132 values): seconds, and whether both give the same probe.

    python bench/probe_bench.py [--fit 16000] [--validation 1800] [--out PATH]

The features are synthetic (labels of a random linear map of Gaussian features, with noise), so the seconds are
those of a fit of this size, not of one catalog's; `fsnet evaluate` prints the real fit's (results.json probe.fit_s).
Writes its figures to bench/results/probe_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from eval.linear_probe import fit_linear_probe

try:  # run as a script: bench/ is on sys.path
    from model_bench import SCHEMA  # fashion-product-small's 7 attributes
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.probe_bench
    from bench.model_bench import SCHEMA
    from bench.record import Table, add_record_options, write_result

FEATURES = 320  # MobileNetV2's last stage, global-average-pooled
STRENGTHS = [0.01, 0.1, 1.0, 10.0]  # probe.regularization's default


def data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    columns = []
    for values in SCHEMA.num_values:
        w = np.random.default_rng(values).standard_normal((FEATURES, values)) / np.sqrt(FEATURES)
        logits = x @ w * 3 + rng.gumbel(size=(n, values))  # (n, V): a noisy softmax choice
        columns.append(logits.argmax(axis=1))
    return x, np.stack(columns, axis=1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fit", type=int, default=16_000)
    parser.add_argument("--validation", type=int, default=1_800)
    add_record_options(parser, "probe_bench")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs")
    rng = np.random.default_rng(0)
    x, y = data(args.fit, rng)
    xv, yv = data(args.validation, rng)
    sizes = f"{args.fit:,} fit and {args.validation:,} validation images, {FEATURES} features"
    print(f"{sizes}, values {SCHEMA.num_values}\n")
    fit_linear_probe(x[:500], y[:500], xv[:100], yv[:100], SCHEMA.names, SCHEMA.num_values, [1.0])  # warm-up: imports
    probes, seconds = {}, {}
    for threads in (1, 2):
        start = time.perf_counter()
        probes[threads] = fit_linear_probe(x, y, xv, yv, SCHEMA.names, SCHEMA.num_values, STRENGTHS, threads=threads)
        seconds[threads] = time.perf_counter() - start
        print(f"{threads} attribute(s) at once: {seconds[threads]:.1f} s")
    same = all(np.array_equal(a, b) for a, b in zip(probes[1].weights, probes[2].weights))
    print(f"\nthe same probe (weights bit for bit): {same}")
    write_result(
        args,
        "probe_bench",
        "The probe's logistic regressions fitted one attribute at a time and two at once",
        [Table("main", ["attributes fitted at once", "seconds"], [[str(t), round(s, 1)] for t, s in seconds.items()])],
        notes=[
            f"Synthetic features: {sizes}, 7 attributes of {min(SCHEMA.num_values)}–{max(SCHEMA.num_values)} values, "
            f"{len(STRENGTHS)} strengths each; side by side in one run. The same weights bit for bit: "
            f"{'yes' if same else 'no'}."
        ],
    )


if __name__ == "__main__":
    main()
