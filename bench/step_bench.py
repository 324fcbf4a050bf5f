"""A CPU training step's two memory-bound parts, side by side in one run: torch's default SGD against its fused SGD
(``make_optimizer`` in fsnet/training.py), and ``nn.Dropout`` against the heads' ``MaskDropout``
(fsnet/model/mask_dropout.py); each alone, then whole steps of stages 1 and 2 of the cpu_mobilenet96 model on cached
trunk maps, with torch's two against fsnet's two (one torch thread, as a Ray Train worker of one CPU runs it).
Rounds alternate between the ways; each figure is the best round's.

    python bench/step_bench.py [--batch 64] [--rounds 6] [--steps 4] [--out PATH]

Writes its figures to bench/results/step_bench.json (bench/record.py; --no-record: print only).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import torch
from torch import nn

from fsnet.config import load_config
from fsnet.losses import StageLoss
from fsnet.model import build_model
from fsnet.model.mask_dropout import MaskDropout
from fsnet.training import image_step, in_training_layout, make_optimizer, trainable

try:  # run as a script: bench/ is on sys.path
    from model_bench import SCHEMA  # fashion-product-small's 7 attributes
    from record import Table, add_record_options, write_result
except ImportError:  # imported as bench.step_bench
    from bench.model_bench import SCHEMA
    from bench.record import Table, add_record_options, write_result


def best_of(ways: dict[str, Callable[[], object]], rounds: int, steps: int) -> dict[str, float]:
    """Seconds per call of each way, the best of ``rounds`` rounds of ``steps`` calls, the ways alternating."""
    for fn in ways.values():
        fn()  # warm-up
    best = dict.fromkeys(ways, float("inf"))
    for _ in range(rounds):
        for name, fn in ways.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / steps)
    return best


def with_torch_dropout(model: nn.Module) -> nn.Module:
    """``model`` with each MaskDropout replaced by torch's nn.Dropout of the same rate."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, MaskDropout):
                setattr(module, name, nn.Dropout(child.p))
    return model


def stage_step(cfg, stage: int, maps: torch.Tensor, labels: torch.Tensor, fsnet_way: bool) -> Callable[[], object]:
    """A stage's step on cached maps, the product's (``fsnet_way``: fused SGD, MaskDropout) or with torch's defaults."""
    torch.manual_seed(0)
    model = in_training_layout(build_model(cfg.model, SCHEMA))
    model.backbone.set_tuned_blocks(cfg.train.tuned_blocks)
    if not fsnet_way:
        with_torch_dropout(model)
    model.train()
    model.backbone.cached().eval()
    settings = getattr(cfg.train, f"stage{stage}")
    params = trainable(model, stage, frozen_trunk=True)
    optimizer = make_optimizer(params, settings, cfg.train, tuned=model.backbone.tuned().parameters())
    if not fsnet_way:
        groups = [{"params": g["params"], "lr": g["lr"]} for g in optimizer.param_groups]  # the same groups
        optimizer = torch.optim.SGD(groups, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
    loss_fn = StageLoss(settings, model.variant)
    generator = torch.Generator().manual_seed(0)
    return lambda: image_step("local", model, model, maps, labels, loss_fn, optimizer, generator, from_trunk=True)


def sgd_alone(cfg) -> tuple[dict[str, Callable[[], object]], int, float]:
    """Stage 2's SGD update alone, both ways, on the same parameters and gradients; (ways, parameter count, the
    largest difference of the two ways' parameters after three updates, relative to their largest value)."""
    torch.manual_seed(0)
    model = build_model(cfg.model, SCHEMA)
    model.backbone.set_tuned_blocks(cfg.train.tuned_blocks)
    params = trainable(model, 2, frozen_trunk=True)
    copies = [[p.detach().clone().requires_grad_() for p in params] for _ in range(2)]
    for a, b in zip(*copies):
        a.grad = torch.randn_like(a)
        b.grad = a.grad.clone()
    kw = dict(lr=cfg.train.stage2.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
    torch_sgd, fused_sgd = torch.optim.SGD(copies[0], **kw), torch.optim.SGD(copies[1], **kw, fused=True)
    for _ in range(3):
        torch_sgd.step()
        fused_sgd.step()
    top = max(float(a.detach().abs().max()) for a in copies[0])
    diff = max(float((a - b).detach().abs().max()) for a, b in zip(*copies)) / top
    return {"torch": torch_sgd.step, "fsnet": fused_sgd.step}, sum(p.numel() for p in params), diff


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)  # train.batch_size
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=4)
    add_record_options(parser, "step_bench")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, one torch thread")
    cfg = load_config(["cpu_mobilenet96"], ["model.variant=full"])
    torch.manual_seed(0)
    probe = build_model(cfg.model, SCHEMA)
    probe.backbone.set_tuned_blocks(cfg.train.tuned_blocks)
    size = cfg.model.image_size
    images = torch.randint(0, 256, (args.batch, 3, size, size), dtype=torch.uint8)
    with torch.no_grad():
        maps = probe.backbone.cached()(probe.normalize(images)).contiguous(memory_format=torch.channels_last)
    labels = torch.stack([torch.randint(0, v, (args.batch,)) for v in SCHEMA.num_values], dim=1)

    sgd, count, sgd_diff = sgd_alone(cfg)
    x = torch.randn(args.batch, len(SCHEMA.names), probe.heads.fc9.weight.shape[1])  # (B, A, fc9 inputs)
    dropouts = {way: module.train() for way, module in (("torch", nn.Dropout(0.5)), ("fsnet", MaskDropout(0.5)))}
    kept = float((dropouts["fsnet"](torch.ones(1_000_000)) > 0).float().mean())
    cases = [  # (what, ways, unit: "ms" per call or images/s)
        (f"SGD update of stage 2's {count / 1e6:.1f} M parameters", sgd, "ms"),
        (f"dropout on {tuple(x.shape)}", {way: (lambda m=m: m(x)) for way, m in dropouts.items()}, "ms"),
        *[
            (
                f"stage-{stage} step on cached maps",
                {way: stage_step(cfg, stage, maps, labels, way == "fsnet") for way in ("torch", "fsnet")},
                "images/s",
            )
            for stage in (1, 2)
        ],
    ]
    rows = []
    print(f"\n{'what':44s} {'torch':>10s} {'fsnet':>10s} {'':8s} {'ratio':>6s}")
    for what, ways, unit in cases:
        seconds = best_of(ways, args.rounds, args.steps)
        if unit == "ms":
            figures = {way: s * 1000 for way, s in seconds.items()}
            ratio = figures["torch"] / figures["fsnet"]
        else:
            figures = {way: args.batch / s for way, s in seconds.items()}
            ratio = figures["fsnet"] / figures["torch"]
        print(f"{what:44s} {figures['torch']:10.1f} {figures['fsnet']:10.1f} {unit:8s} {ratio:5.2f}x")
        rows.append([what, unit, round(figures["torch"], 1), round(figures["fsnet"], 1), f"{ratio:.2f}×"])
    print(f"\nfused against default SGD, three updates: largest difference {sgd_diff:.1e} of the largest parameter")
    print(f"MaskDropout(0.5) kept {kept:.4f} of a million values")
    write_result(
        args,
        "step_bench",
        "A CPU training step: torch's default SGD and dropout against fused SGD and MaskDropout",
        [Table("main", ["what", "unit", "torch's", "fsnet's", "faster by"], rows)],
        notes=[
            f"The cpu_mobilenet96 model (ImageNet MobileNetV2, tuned blocks {cfg.train.tuned_blocks}, variant full) "
            f"on batches of {args.batch} cached trunk maps, channels-last, one torch thread; the best of "
            f"{args.rounds} alternating rounds of {args.steps} calls. torch's: torch.optim.SGD as constructed by "
            "default and nn.Dropout; fsnet's: SGD with fused=True and MaskDropout. "
            f"Fused against default SGD after three updates: largest parameter difference {sgd_diff:.1e} of the "
            f"largest parameter. MaskDropout(0.5) kept {kept:.4f} of a million values."
        ],
    )


if __name__ == "__main__":
    main()
