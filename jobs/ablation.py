"""The paper's ablation ladder (Table 1) and its peers on one catalog: train -> index -> evaluate for each
variant and for the ADDE-style model (``adde``), then one report comparing them with the baselines.

    fsnet ablation --config tiny --catalog fsnet-demo/catalog --out fsnet-demo/ablation
    fsnet ablation --config fashion_product_small --config cpu_mobilenet96 --catalog catalogs/fps \\
        --variants wo_rank,rank,rank_l,rank_lg,full,full_ff,attr_logp,adde --out runs/fps-ablation
    ray job submit --working-dir . -- python -m jobs.ablation --catalog s3://b/catalogs/shop --out s3://b/ablation/shop

Stages are shared where variants allow (they are switches of one model): stage 1 (L_C) trains the backbone and
the attribute classifiers only, which no switch changes (feature fusion is in the heads), so every FSN variant
reuses the first one's; stage 2, the memory block and the stage-3 features are shared by variants with the same
ranking, localization and fusion (rank_l, rank_lg, full). A shared stage is the donor's weights moved into the
receiving variant's model (parameters only one of them has keep the receiver's seeded initial values). The
ADDE-style model shares nothing (another network). Baselines named in --variants (attribute_only, attr_logp,
probe, probe_attributes: eval/scorer.BASELINES) are the ones every evaluation runs and the report shows; none
named: eval.baselines as configured. The probe's trunk features are computed once per catalog and reused by
every variant's evaluation. Layout: <out>/<method>/{run,index,eval}, <out>/report/.
"""

from __future__ import annotations

import time
from typing import Annotated, Optional

import torch
import typer

from eval.scorer import BASELINES  # the baselines evaluate can run, by name
from fsnet.catalog.reader import Catalog
from fsnet.config import Config
from fsnet.errors import ConfigError
from fsnet.input_size import resolve_input_size, shorter_sides
from fsnet.model import VARIANTS, build_model, load_model, save_model
from fsnet.storage import Storage, join
from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.pipeline import ensure_catalog, train_index_evaluate
from jobs.report import report

ADDE = "adde"


def shares(donor: str, receiver: str) -> list[str]:
    """What ``receiver`` can take from ``donor``'s run: [], ['stage1'] or ['stage1', 'stage2', 'memory']."""
    if ADDE in (donor, receiver):
        return []
    d, r = VARIANTS[donor], VARIANTS[receiver]
    if (d.ranking, d.localization, d.fusion) == (r.ranking, r.localization, r.fusion):
        return ["stage1", "stage2", "memory"]
    return ["stage1"]  # L_C trains the backbone and classifiers, the same modules in every variant


def transplant(cfg: Config, catalog: Catalog, storage: Storage, donor_url: str, target_url: str) -> None:
    """The donor's weights in the receiving variant's model (built and seeded as its training would)."""
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg.model, catalog.schema, pretrained=False)
    donor = load_model(donor_url, storage)
    state = model.state_dict()
    state.update({k: v for k, v in donor.state_dict().items() if k in state and state[k].shape == v.shape})
    model.load_state_dict(state)
    # which trunk blocks run on cached maps is not in the state dict; without it the receiver would feed the cached
    # maps (those before the tuned blocks) straight to conv5
    model.backbone.set_tuned_blocks(donor.backbone.tuned_blocks)
    save_model(model, target_url, storage)


def share_stages(cfg: Config, catalog: Catalog, storage: Storage, donor_run: str, run: str, parts: list[str]) -> None:
    for part in parts:
        source, target = join(donor_run, f"{part}.pt"), join(run, f"{part}.pt")
        if storage.exists(target) or not storage.exists(source):
            continue
        transplant(cfg, catalog, storage, source, target)
        if part == "memory":  # stage 3 trains on the fixed features the memory came from
            features = join(donor_run, "features")
            for name in storage.listdir(features):
                storage.write_bytes(join(run, "features", name), storage.read_bytes(join(features, name)))
        console.print(f"{run}: {part} shared from {donor_run}")


def run_order(methods: list[str]) -> list[str]:
    """The order the ablation trains ``methods`` in, from the variants' registry: donors first, the one whose stages
    the others can take the most of (``shares``) first; among equals the later rung of the ladder, which trains more
    (full before rank_lg before rank_l); the ADDE-style model, which shares nothing, last."""
    ladder = [*VARIANTS, ADDE]
    served = {m: sum(len(shares(m, other)) for other in methods if other != m) for m in methods}
    return sorted(methods, key=lambda m: (m == ADDE, -served[m], -ladder.index(m)))


def method_config(cfg: Config, method: str) -> Config:
    """The config that trains ``method``: a FashionSearchNet variant, or the ADDE-style model."""
    model = cfg.model.model_copy(update={"kind": "adde"} if method == ADDE else {"kind": "fsn", "variant": method})
    return cfg.model_copy(update={"model": model})


def ablation(cfg: Config, variants: list[str], out: str, catalog: str | None) -> str:
    unknown = [v for v in variants if v not in VARIANTS and v != ADDE and v not in BASELINES]
    if unknown:
        raise ConfigError(
            f"--variants: unknown {', '.join(unknown)} (variants: {', '.join([*VARIANTS, ADDE])}; "
            f"baselines: {', '.join(BASELINES)})"
        )
    baselines = [v for v in variants if v in BASELINES]
    if baselines:
        cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"baselines": baselines})})
    variants = [v for v in variants if v not in BASELINES]
    if not variants:
        raise ConfigError(
            "--variants: name at least one model (a variant or adde); baselines are evaluated beside a model's index"
        )
    storage = Storage(cfg.storage)
    catalog_url = ensure_catalog(cfg, out, catalog, render=False)
    opened = Catalog.open(catalog_url, storage)
    cfg, chosen = resolve_input_size(cfg, lambda: shorter_sides(opened))  # once, for every variant and shared stage
    if chosen:
        console.print(chosen, highlight=False)
    done: list[str] = []
    results = {}
    for variant in run_order(variants):
        start = time.perf_counter()
        vcfg = method_config(cfg, variant)
        run = join(out, variant, "run")
        donors = sorted(((shares(d, variant), d) for d in done), key=lambda x: -len(x[0]))
        if donors and donors[0][0] and not storage.exists(join(run, "model.pt")):
            share_stages(vcfg, opened, storage, join(out, donors[0][1], "run"), run, donors[0][0])
        console.rule(f"{variant}")
        _, _, results[variant] = train_index_evaluate(vcfg, catalog_url, join(out, variant))
        console.print(f"{variant}: {time.perf_counter() - start:.0f} s")
        done.append(variant)
    return report(storage, [results[v] for v in variants], join(out, "report"))


def cli(
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            callback=absolute_option,
            help="Folder URL for every variant's run, index, results and the report.",
        ),
    ],
    variants: Annotated[
        str,
        typer.Option(
            "--variants",
            help=f"Comma-separated methods: FSN variants, adde, and the baselines to show ({', '.join(BASELINES)}).",
        ),
    ] = "wo_rank,rank,rank_l,rank_lg,full,full_ff",
    catalog: Annotated[
        Optional[str],
        typer.Option(
            "--catalog",
            callback=absolute_option,
            help="Packed catalog URL (else cfg.source is packed into <out>/catalog).",
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Train, index and evaluate each variant of the ablation ladder and write one report comparing them."""
    cfg = resolve_config(config, set_)
    page = ablation(cfg, [v.strip() for v in variants.split(",") if v.strip()], out, catalog)
    console.print(f"report: {page}")


if __name__ == "__main__":
    run_app(single_command(cli))
