"""The re-index quality gate (``fsnet reindex --gate``): a new index version is published only when its retrieval
quality holds against the live version's.

Once the new version is complete and before CURRENT names it (jobs/index.py's ``before_publish``):
1. evaluate the new version with the catalog's protocol (jobs/evaluate.py) and store its results with it, in
   ``v<N>/eval/`` (results.json, outcomes.parquet);
2. read the live version's results, stored with it when it was published; a live version published before the gate
   has none: it is evaluated once now, against the same catalog, and its results stored with it (one line says so);
3. compare Top-``gate.k`` of each version's ranking (eval/comparison.py): paired over the same manipulations when
   both evaluations share a protocol, else each side's queries resampled on their own (the catalog changed);
4. publish when the new version is not worse beyond ``gate.tolerance``: refused only when the whole 95% interval
   of new minus live lies below -tolerance. Else the version stays unpublished beside the others with its verdict
   (``v<N>/GATE.json``) and the comparison page (``v<N>/gate/compare.html``); the command prints one line and exits 3.

A first version (no live one) is evaluated, published and its results stored: the next run compares with them.
The gate's cost is one evaluation (two the first time a live version lacks stored results)."""

from __future__ import annotations

import json
from typing import Callable

from eval.comparison import compare, load_side, protocol_difference, signed, summary_line
from eval.comparison_page import COMPARISON_PAGE, render_comparison
from eval.results import RESULTS_FILE
from fsnet.config import Config
from fsnet.errors import FsnetError
from fsnet.index.manifest import GATE_FILE, version_name
from fsnet.storage import Storage, join
from jobs.command import console
from jobs.evaluate import evaluate

EVAL_DIR = "eval"  # a version's own results, stored with it
GATE_DIR = "gate"  # the comparison the gate made
EXIT_REFUSED = 3  # fsnet reindex --gate refused the new version (2 stays "bad input")


class GateRefused(FsnetError):
    """The new version's quality is worse than the live version's beyond the tolerance."""

    exit_code = EXIT_REFUSED


def quality_gate(cfg: Config, index_url: str, catalog_url: str) -> Callable[[int, int | None], str]:
    """jobs/index.py's ``before_publish``: (new version, live version or None) -> the verdict's line; raises
    GateRefused to leave CURRENT on the live version."""
    storage = Storage(cfg.storage)
    eval_cfg = gate_eval_config(cfg)

    def check(version: int, live: int | None) -> str:
        new_dir = join(index_url, version_name(version), EVAL_DIR)
        console.print(f"gate: evaluating {version_name(version)} before it is published")
        evaluate(eval_cfg, index_url, catalog_url, new_dir, version=version)
        if live is None:
            _verdict(storage, index_url, version, {"published": True, "against": None})
            return f"gate: {version_name(version)} is the first version: nothing to compare with; results in {new_dir}"
        live_dir = join(index_url, version_name(live), EVAL_DIR)
        if not storage.exists(join(live_dir, RESULTS_FILE)):
            console.print(
                f"gate: {version_name(live)} has no stored results (published before the gate): evaluating it once "
                f"against {catalog_url} and storing them in {live_dir}"
            )
            evaluate(eval_cfg, index_url, catalog_url, live_dir, allow_catalog_mismatch=True, version=live)
        base = load_side(storage, live_dir, cfg.gate.method)
        new = load_side(storage, new_dir, cfg.gate.method)
        unpaired = protocol_difference(base.results, new.results) is not None
        c = compare(
            base,
            new,
            cfg.eval.resamples or 1000,
            cfg.eval.bootstrap_seed,
            cfg.eval.confidence,
            unpaired=unpaired,
            ks=(cfg.gate.k,),
        )
        f = c.figure(cfg.gate.k)
        published = f.high >= -cfg.gate.tolerance
        page = join(index_url, version_name(version), GATE_DIR, COMPARISON_PAGE)
        storage.write_text(
            join(index_url, version_name(version), GATE_DIR, "compare.json"), c.model_dump_json(indent=1)
        )
        storage.write_text(page, render_comparison(c, summary_line(c), cfg.gate.k))
        what = (
            f"Top-{cfg.gate.k} {f.new:.3f} against {version_name(live)}'s {f.base:.3f}: {signed(f.difference)}, "
            f"{c.confidence:.0%} interval {signed(f.low)} to {signed(f.high)} ({c.pairing}; tolerance "
            f"{cfg.gate.tolerance})"
        )
        _verdict(
            storage,
            index_url,
            version,
            {"published": published, "against": live, "k": cfg.gate.k, "tolerance": cfg.gate.tolerance}
            | f.model_dump()
            | {"pairing": c.pairing, "comparison": page},
        )
        if not published:
            raise GateRefused(
                f"gate: {version_name(version)} refused, {what}; CURRENT stays {version_name(live)}; comparison: {page}"
            )
        return f"gate: {what}: passed"

    return check


def gate_eval_config(cfg: Config) -> Config:
    """The gate's evaluation: the model's runs (and the baselines only with gate.baselines), no retrieval examples."""
    baselines = cfg.eval.baselines if cfg.gate.baselines else []
    return cfg.model_copy(
        update={
            "eval": cfg.eval.model_copy(update={"baselines": baselines}),
            "report": cfg.report.model_copy(update={"examples": 0}),
        }
    )


def _verdict(storage: Storage, index_url: str, version: int, verdict: dict) -> None:
    storage.write_text(join(index_url, version_name(version), GATE_FILE), json.dumps(verdict, indent=1))
