"""Evaluate an index with the paper's protocol (section 4.5): every manipulation of every query whose target exists
in the gallery, exact Top-K by the factorized evaluator, Top-K and NDCG curves per attribute, the baselines in the
same harness, and retrieval examples, all in one results.json.

Local:
    fsnet evaluate --index fsnet-demo/index --catalog fsnet-demo/catalog --out fsnet-demo/eval
    fsnet evaluate ... --check        # also the faiss brute-force reference; fails unless both agree
    fsnet evaluate ... --set eval.protocol=catalog    # the catalog's stored query list (ADDE's files), in its order
Cluster:
    ray job submit --working-dir . -- python -m jobs.evaluate --index s3://b/index/shop \\
        --catalog s3://b/catalogs/shop --out s3://b/eval/shop

The gallery is the catalog's gallery split as the index holds it (images the index rejected are counted and
left out). Query representations come from the index when it covers them (--split all), else from the model: in
this process up to index.in_process_max queries or where the pool would be one CPU actor, else on Ray Data actors
(the same EmbedImages the index job runs).
The probe baselines (eval/probe.py) read the frozen trunk's pooled features from the trunk feature cache
(jobs/trunk_cache.py: computed on Ray Data actors the first time, beside the catalog) and fit their probe on the
training split here.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import platform
import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch
import typer
from rich.table import Table
from threadpoolctl import threadpool_limits

import fsnet
from eval.algebra import algebra_of
from eval.bootstrap import QueryBootstrap, paired_difference, query_rows
from eval.brute_force import brute_force_topk
from eval.comparison import best_of
from eval.data import EvalData, ProbeInputs
from eval.linear_probe import ProbeUnavailable, mean_accuracy
from eval.metrics import IdealLists, hit_ranks, summarize
from eval.outcomes import OUTCOMES_FILE, outcomes_bytes
from eval.probe import PROBE_BASELINES, build_probe, held_out_accuracy
from eval.protocol import Manipulations, build_manipulations, protocol_fingerprint, stored_manipulations
from eval.report import PROBE, TABLE_K, band_at, banded, headline_text, headlines, interval_note
from eval.results import RESULTS_FILE, Bootstrap, Check, Difference, Example, Hit, Results, Run
from eval.scorer import BASELINES, FusedScorer, ModelScorer, Scorer
from fsnet.catalog.reader import Catalog
from fsnet.columns import column_array
from fsnet.config import Config, config_dict
from fsnet.embedding import EmbedImages
from fsnet.errors import CatalogError, FsnetError
from fsnet.explain import explain_png
from fsnet.index.reader import IndexReader
from fsnet.model import RetrievalModel
from fsnet.schema_match import NOT_IN_MODEL, SchemaMatch
from fsnet.storage import Storage, join, parent
from fsnet.timing import timed
from fsnet.trunk_features import TrunkCache
from jobs.command import ConfigOption, SetOption, absolute_option, console, resolve_config, run_app, single_command
from jobs.embed_rows import embed_here, embed_rows, embeds_here
from jobs.progress import bar, count_bar, pipeline_bar
from jobs.ray_runtime import init_ray
from jobs.tables import show
from jobs.trunk_cache import existing_trunk_cache, trunk_cache

EXAMPLE_RESULTS = 4  # results shown per retrieval example (paper Fig. 6)
LISTED = 50  # ids listed in results.json for rejected queries / gallery images left out (all are counted)
SHOWN = 5  # ids of gallery images left out printed on the terminal


class EvaluationMismatch(FsnetError):
    """The factorized evaluator and the brute-force reference disagree (--check)."""


@dataclass
class Opened:
    """The index, the catalog and the model, opened and checked against each other."""

    storage: Storage
    reader: IndexReader
    catalog: Catalog
    model: RetrievalModel
    match: SchemaMatch  # model vs catalog schema: labels are translated to the model's codes by value name
    mismatch: str | None  # how the catalog differs from the index's (--allow-catalog-mismatch), None: it does not


@dataclass
class QueryRows:
    rows: pa.Table  # id, reps, predicted of every query embedded, sorted by id
    rejected: list[str]  # query images left out: the model could not embed them (or, stored list: not in the index)


def evaluate(
    cfg: Config,
    index_url: str,
    catalog_url: str,
    out: str,
    check: bool = False,
    allow_catalog_mismatch: bool = False,
    version: int | None = None,
) -> dict[str, Any]:
    """``allow_catalog_mismatch``: evaluate even when ``catalog_url`` is not the catalog the index was built from
    (another split, other shards); the gallery images the index lacks are then counted and named. ``version``: that
    version of the index rather than the one CURRENT names. Returns results.json's content, as written."""
    # one BLAS thread: after each product OpenBLAS's threads spin, waiting for the next, on the cores torch's next
    # product needs; the scorers alternate numpy's small float64 products with torch's large ones block by block
    with threadpool_limits(1, user_api="blas"):
        return _evaluate(cfg, index_url, catalog_url, out, check, allow_catalog_mismatch, version)


def _evaluate(
    cfg: Config,
    index_url: str,
    catalog_url: str,
    out: str,
    check: bool,
    allow_catalog_mismatch: bool,
    version: int | None,
) -> dict[str, Any]:
    start = time.perf_counter()
    timings: dict[str, float] = {}
    Storage(cfg.storage).check_output_folder(out)  # before the evaluation, not after it
    opened = open_index(cfg, index_url, catalog_url, allow_catalog_mismatch, version)
    algebra = algebra_of(opened.model)  # FashionSearchNet replaces slots; the ADDE-style model adds memory differences

    # the catalog's stored query list (ADDE's files), or every manipulation of its query split
    protocol = protocol_mode(cfg, opened.catalog)
    with timed(timings, "load"), opened.catalog.reading():  # a shard that cannot be read: one line naming it
        queries = queries_in_index(opened, protocol)
        if queries is None:  # the index holds the gallery only: embed the query split now
            queries = embed_queries(cfg, opened)
        data = load_data(opened, protocol, queries)
    _print_left_out(opened, catalog_url, data)
    # the yardstick: a linear probe on the frozen pretrained trunk (None, and one line why, when it cannot be built)
    data.probe, probe = probe_baselines(cfg, opened, data, timings)
    baselines = [n for n in cfg.eval.baselines if data.probe is not None or n not in PROBE_BASELINES]

    with timed(timings, "protocol"):
        manipulations = eval_manipulations(cfg, opened.catalog, data)
    if not len(manipulations):
        raise CatalogError(
            f"{catalog_url}: no manipulation of a query has its target in the gallery; a larger gallery "
            "(split.n_gallery) is needed"
        )

    model = ModelScorer(opened.model.method, algebra, data, cfg.eval.query_chunk)
    scorers: list[Scorer] = [model, *(make(data, algebra) for n, make in BASELINES.items() if n in baselines)]
    if getattr(opened.model, "logp_weight", None) is not None:  # the fusion training chose (eval/fused_logp.py)
        scorers.insert(1, FusedScorer(opened.model.method, algebra, data, opened.model.logp_weight))
    ranked: list[np.ndarray] = []  # (M, k_max) gallery positions per scorer
    with bar("ranking", "methods") as progress:
        task = progress.add_task("ranking", total=len(scorers))
        for scorer in scorers:
            with timed(timings, "topk" if scorer is model else scorer.name):
                ranked.append(scorer.topk(manipulations, cfg.eval.k_max))
            progress.advance(task)
    checked = None
    if check:
        with timed(timings, "brute_force"):
            reference = brute_force_topk(
                algebra, data.query_reps, data.gallery_global, manipulations, cfg.eval.k_max, values=data.query_labels
            )
        checked = agreement(reference.positions, ranked[0], cfg.eval.k_max, timings)

    with timed(timings, "metrics"):
        ideals = IdealLists.of(manipulations, data.gallery_labels, cfg.eval.k_max)  # the same for every ranking
        # intervals: every run resampled with the same draws of the queries (eval/bootstrap.py)
        boot = bootstrap_of(cfg, manipulations)
        runs = [
            Run(
                method=s.name,
                role=s.role,
                **summarize(manipulations, top, data.gallery_labels, cfg.eval.k_max, ideals, boot),
            )
            for s, top in zip(scorers, ranked)
        ]
        ranks = {s.name: hit_ranks(top, data.gallery_labels, manipulations.target) for s, top in zip(scorers, ranked)}
        headline = paired_headline(boot, manipulations, ranks, model.name, cfg.eval.k_max)
    with timed(timings, "examples"):
        examples = retrieval_examples(cfg, opened, data, manipulations, ranked[0], model.name)  # the model's run
    timings["total"] = time.perf_counter() - start

    results = results_of(
        cfg, opened, index_url, catalog_url, data, manipulations, timings, model, checked, runs, examples, probe
    )
    if boot is not None:
        results.bootstrap = Bootstrap(resamples=boot.resamples, confidence=boot.confidence, seed=boot.seed)
    results.headline = headline
    # the outcomes first, results.json last (what says the evaluation finished); the outcomes carry its creation
    # time, which fsnet compare checks: a run stopped between the two leaves no pair that seems to belong together
    outcomes = outcomes_bytes(manipulations, data.query_ids, ranks, cfg.eval.k_max, results.created)
    opened.storage.write_bytes(join(out, OUTCOMES_FILE), outcomes)
    opened.storage.write_text(join(out, RESULTS_FILE), results.dumps())
    return results.model_dump(mode="json")


def bootstrap_of(cfg: Config, manipulations: Manipulations) -> QueryBootstrap | None:
    """The draws of the queries every run's intervals share; None with eval.resamples 0."""
    if not cfg.eval.resamples:
        return None
    queries, _ = query_rows(manipulations.query)
    return QueryBootstrap.draw(queries, cfg.eval.resamples, cfg.eval.bootstrap_seed, cfg.eval.confidence)


def paired_headline(
    boot: QueryBootstrap | None,
    manipulations: Manipulations,
    ranks: dict[str, np.ndarray],
    model: str,
    k_max: int,
) -> Difference | None:
    """results.json's ``headline``: the model's best-informed ranking (its ``+logp`` run when it has one) against
    the probe at Top-20 (Top-k_max when shorter), paired over the same manipulations; None without a probe run or
    intervals."""
    if boot is None or PROBE not in ranks:
        return None
    method = best_of(model, list(ranks))
    k = min(TABLE_K, k_max)
    new, old = (ranks[m] < k for m in (method, PROBE))
    _, rows = query_rows(manipulations.query)
    groups = len(manipulations.groups)
    total, _ = paired_difference(boot, new, old, rows, manipulations.group, groups)
    present = [g for g in range(groups) if (manipulations.group == g).any()]
    mean = [float(np.mean([x[manipulations.group == g].mean() for g in present])) for x in (new, old)]
    return Difference(
        method=method,
        against=PROBE,
        k=k,
        value=mean[0],
        reference=mean[1],
        difference=total.value,
        low=total.low,
        high=total.high,
        share_not_above=total.share_not_above,
    )


def open_index(
    cfg: Config, index_url: str, catalog_url: str, allow_catalog_mismatch: bool = False, version: int | None = None
) -> Opened:
    """The index (CURRENT's version, or ``version``), the catalog and the index's model; a catalog other than the
    index's is refused unless allowed."""
    storage = Storage(cfg.storage)
    reader = IndexReader.open(index_url, storage, version)
    catalog = Catalog.open(catalog_url, storage)
    mismatch = reader.check_catalog(catalog_url, catalog.manifest, allow=allow_catalog_mismatch)
    if mismatch:
        console.print(f"warning: {mismatch}; evaluating anyway (--allow-catalog-mismatch)")
    model = reader.model()  # the index's model, its bytes checked against the manifest's sha256
    match = SchemaMatch.of(model.schema, catalog.schema, reader.manifest.model.url, catalog_url)
    if match.note():
        console.print(match.note())
    return Opened(storage, reader, catalog, model, match, mismatch)


def probe_baselines(
    cfg: Config, opened: Opened, data: EvalData, timings: dict[str, float]
) -> tuple[ProbeInputs | None, dict[str, Any]]:
    """The probe baselines' inputs when eval.baselines names one: the pretrained trunk of the index's model (not
    necessarily cfg.model's), frozen, at probe.image_size or the model's input size (so that a frozen-trunk
    training and the probe share one cache entry), and the probe fitted on the training split less its validation
    images (train.validation, train.seed). With results.json's ``probe`` (or ``probe_unavailable``: the line printed,
    and no inputs, when it cannot be built); (None, {}) when no probe baseline is asked for."""
    if not set(PROBE_BASELINES) & set(cfg.eval.baselines):
        return None, {}
    storage, catalog, model, names = opened.storage, opened.catalog, opened.model.cfg, opened.match.names
    size = cfg.probe.image_size or opened.reader.manifest.image_size
    with timed(timings, "trunk_features"):
        # a run with tuned blocks computed the entry before them: it holds the whole pretrained trunk's pooled features
        tuned = opened.model.backbone.tuned_blocks
        cache = existing_trunk_cache(cfg, storage, catalog, model, size, tuned) if tuned else None
        cache = cache or existing_trunk_cache(cfg, storage, catalog, model, size)
        if cache is None:  # computed once per catalog, trunk and size
            init_ray(cfg.ray)  # Ray: the trunk pass on Ray Data actors
            cache = trunk_cache(cfg, storage, catalog, size, model=model)
    with timed(timings, "probe_fit"):
        train_ids = np.sort(catalog.split_ids("train").astype(str))
        labels = opened.match.to_model(_aligned(catalog.rows(train_ids.tolist(), ["id", *names]), train_ids, names))
        try:
            inputs = build_probe(
                cache, data, train_ids, labels, cfg.train.validation, cfg.train.seed, cfg.probe.regularization
            )
        except ProbeUnavailable as err:
            console.print(f"{err}; the probe baselines are left out")
            return None, {"probe_unavailable": str(err)}
    return inputs, {"probe": probe_facts(cache, inputs, data)}


def probe_facts(cache: TrunkCache, inputs: ProbeInputs, data: EvalData) -> dict[str, Any]:
    """results.json's ``probe``: the trunk, the fit, the held-out accuracy, the images without trunk features."""
    linear, trunk, names = inputs.probe, cache.manifest, data.match.names
    accuracy = held_out_accuracy(
        data, inputs.query_predicted, inputs.gallery_predicted, inputs.query_found, inputs.gallery_found
    )
    return {
        "backbone": trunk.backbone,
        "weights": trunk.weights,
        "image_size": trunk.image_size,
        "features": int(linear.mean.shape[0]),
        "cache": cache.url,
        "fit_images": linear.fit_images,
        "validation_images": linear.validation_images,
        "strength": dict(zip(names, linear.strengths)),
        "validation_accuracy": dict(zip(names, linear.validation_accuracy)),
        **_accuracy(names, accuracy),
        "fit_s": round(linear.seconds, 2),
        "fit_reused": inputs.fit_reused,
        "gallery_rejected": _listed(data.gallery_ids[~inputs.gallery_found].tolist()),
        "queries_rejected": _listed(data.query_ids[~inputs.query_found].tolist()),
    }


def _accuracy(names: list[str], per_attribute: list[float | None]) -> dict[str, Any]:
    """results.json's ``accuracy`` (per attribute) and ``mean_accuracy``."""
    return {"accuracy": dict(zip(names, per_attribute)), "mean_accuracy": mean_accuracy(per_attribute)}


def _listed(ids: list[str]) -> dict[str, Any]:
    return {"count": len(ids), "ids": ids[:LISTED]}


def agreement(reference: np.ndarray, factorized: np.ndarray, k: int, timings: dict[str, float]) -> Check:
    """--check: the brute-force reference's Top-k lists (M, k) equal the factorized ones, else EvaluationMismatch."""
    differ = int((reference != factorized).any(axis=1).sum())
    if differ:
        raise EvaluationMismatch(
            f"factorized and brute-force Top-{k} differ for {differ} of {len(factorized)} manipulations"
        )
    return Check(identical=True, factorized_s=timings["topk"], brute_force_s=timings["brute_force"])


def results_of(
    cfg: Config,
    opened: Opened,
    index_url: str,
    catalog_url: str,
    data: EvalData,
    manipulations: Manipulations,
    timings: dict[str, float],
    model: ModelScorer,
    checked: Check | None,
    runs: list[Run],
    examples: list[Example],
    probe: dict[str, Any],
) -> Results:
    """results.json: what was evaluated, with what, where, how fast, and every run's curves; ``probe``: the probe's
    fields (probe_baselines)."""
    reader, schema, listed = opened.reader, opened.model.schema, _listed
    return Results.model_validate(
        {
            "fsnet_version": fsnet.__version__,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "dataset": {
                "catalog": catalog_url,
                "source": opened.catalog.manifest.source,
                "attributes": {a.name: a.values for a in schema.attributes},  # the model's: the codes of every result
                "not_in_model": opened.match.not_in_model,
                "catalog_mismatch": opened.mismatch,
                "queries": len(data.query_ids),
                "gallery": len(data.gallery_ids),
                "manipulations": len(manipulations),
                "at_once": cfg.eval.at_once if data.protocol == "generated" else None,
                "protocol": data.protocol,
                # the stored list's rows, before those left out
                "protocol_rows": opened.catalog.manifest.protocol.rows if data.protocol == "catalog" else None,
                "counts": manipulations.counts(),
                "fingerprint": protocol_fingerprint(data.query_ids, data.gallery_ids, manipulations),
                "gallery_missing": listed(data.gallery_missing),
                "queries_rejected": listed(data.queries_rejected),
                "queries_unpredictable": listed(data.queries_unpredictable),
            },
            "model": {
                "url": reader.manifest.model.url,
                "sha256": reader.manifest.model.sha256,
                "variant": opened.model.method,
                "backbone": opened.model.cfg.backbone,
                "image_size": opened.model.cfg.image_size,
                "embed_dim": opened.model.cfg.embed_dim,
                "global_dim": int(data.gallery_global.shape[1]),
                **_accuracy(data.match.names, held_out_accuracy(data, data.query_predicted, data.gallery_predicted)),
            },
            "index": {
                "url": index_url,
                "version": reader.manifest.version,
                "kind": reader.manifest.index_kind,
                "indexed": reader.manifest.indexed,
                "images_per_s": _index_rate(reader),
            },
            "training": _training_summary(opened.storage, reader.manifest.model.url),
            "hardware": hardware(),
            "timings": timings,
            "throughput": {
                "manipulations_per_s": len(manipulations) / max(timings["topk"], 1e-9),
                "exact_rows": model.last.exact_rows,
            },
            "check": checked,
            "runs": runs,
            **probe,
            "examples": examples,
            "config": config_dict(cfg, secrets="drop"),
        }
    )


def queries_in_index(opened: Opened, protocol: str) -> QueryRows | None:
    """The queries' embedding rows from the index; None when it does not hold the query split (a gallery index:
    the queries are embedded then). The stored list's queries are gallery images: the index holds them unless it
    rejected them."""
    reader, catalog = opened.reader, opened.catalog
    if protocol == "catalog":
        query_ids = np.unique(catalog.protocol()["query"].astype(str))
        found = _sorted(reader.embeddings(query_ids.tolist(), ["id", "reps", "predicted", "probabilities"]))
        return QueryRows(found, sorted(set(query_ids.tolist()) - set(found["id"].to_pylist())))
    query_ids = np.sort(catalog.split_ids("query").astype(str))
    if not len(query_ids) and catalog.manifest.splits.source:
        raise CatalogError(
            f"{catalog.url}: no query split ({catalog.manifest.splits.source}); evaluate its stored query list "
            "(eval.protocol=catalog), or pack with source.adde.ref / indfull / gt set"
        )
    found = _sorted(reader.embeddings(query_ids.tolist(), ["id", "reps", "predicted", "probabilities"]))
    return QueryRows(found, []) if found.num_rows == len(query_ids) else None


def embed_queries(cfg: Config, opened: Opened) -> QueryRows:
    """The query split embedded by the index's model at its image size: on Ray Data actors (Ray started), or, for
    at most index.in_process_max queries (or where the pool would be one CPU actor: jobs/embed_rows.py
    ``embeds_here``), in this process by the same EmbedImages."""
    reader, catalog = opened.reader, opened.catalog
    count = len(catalog.split_ids("query"))
    if embeds_here(cfg, count):
        with count_bar("queries", count) as advance:
            shards = embed_here(
                cfg,
                opened.storage,
                reader.manifest.model.url,
                catalog,
                "query",
                catalog.manifest.shards,
                reader.manifest.image_size,
                advance=advance,
            )
            table = pa.concat_tables([rows for _, rows in shards])  # queries_in_index: the split is not empty
    else:
        init_ray(cfg.ray)  # Ray: the same EmbedImages actors the index job runs
        rows = catalog.dataset("query", ["id", "image", *catalog.schema.names], with_shard=True)
        embedded = embed_rows(
            cfg, opened.storage, reader.manifest.model.url, catalog, rows, image_size=reader.manifest.image_size
        )
        with pipeline_bar("queries", count, EmbedImages.__name__):
            table = pa.concat_tables(ray.get(embedded.to_arrow_refs()))
    table = table.select(["id", "error", "reps", "predicted", "probabilities"])
    rejected = sorted(table.filter(pc.is_valid(table["error"]))["id"].to_pylist())
    return QueryRows(_sorted(table.filter(pc.is_null(table["error"]))), rejected)


def load_data(opened: Opened, protocol: str, queries: QueryRows) -> EvalData:
    """Gallery and query arrays with the catalog's labels translated to the model's codes (by value name), so that
    they compare with the model's predictions and memory rows; attributes in the model's order."""
    reader, catalog, match = opened.reader, opened.catalog, opened.match
    names = match.names
    a, d = len(names), reader.manifest.embed_dim
    gallery_ids = np.sort(catalog.split_ids("gallery").astype(str))
    rows = _sorted(reader.embeddings(gallery_ids.tolist(), ["id", "global", "predicted", "probabilities"]))
    held = rows["id"].to_numpy(zero_copy_only=False).astype(str)
    missing = sorted(set(gallery_ids.tolist()) - set(held.tolist()))
    labels = catalog.rows(held.tolist(), ["id", *names])
    gallery_labels = match.to_model(_aligned(labels, held, names))  # (N, A) NOT_IN_MODEL never matches a target

    found = queries.rows
    q_ids = found["id"].to_numpy(zero_copy_only=False).astype(str)
    query_labels = match.to_model(_aligned(catalog.rows(q_ids.tolist(), ["id", *names]), q_ids, names))
    # a query with a value new since the model was trained: its target keeps a value the model cannot represent (and
    # the ADDE-style memory has no column to subtract), so it is left out, counted
    unpredictable = (query_labels == NOT_IN_MODEL).any(axis=1)
    left_out = q_ids[unpredictable].tolist()
    if left_out:
        keep = ~unpredictable
        found, q_ids, query_labels = found.filter(pa.array(keep)), q_ids[keep], query_labels[keep]
    return EvalData(
        query_ids=q_ids,
        query_labels=query_labels,
        query_reps=column_array(found, "reps", (a, d)),
        query_predicted=column_array(found, "predicted", (a,), np.int64),
        query_probabilities=column_array(found, "probabilities", (sum(match.model.num_values),)),
        gallery_ids=held,
        gallery_labels=gallery_labels,
        gallery_global=column_array(rows, "global", (-1,)),
        gallery_predicted=column_array(rows, "predicted", (a,), np.int64),
        gallery_probabilities=column_array(rows, "probabilities", (sum(match.model.num_values),)),
        gallery_missing=missing,
        queries_rejected=queries.rejected,
        protocol=protocol,
        match=match,
        queries_unpredictable=left_out,
    )


def protocol_mode(cfg: Config, catalog: Catalog) -> str:
    """eval.protocol resolved against the catalog: "catalog" (its stored query list) or "generated"."""
    stored = catalog.manifest.protocol is not None
    if cfg.eval.protocol == "catalog" and not stored:
        raise CatalogError(
            f"{catalog.url}: eval.protocol=catalog, but the catalog stores no query list (ADDE's split files "
            "packed with source.adde.ref / indfull / gt give one); use eval.protocol=generated"
        )
    if cfg.eval.protocol == "auto":
        return "catalog" if stored else "generated"
    return cfg.eval.protocol


def eval_manipulations(cfg: Config, catalog: Catalog, data: EvalData) -> Manipulations:
    """Every manipulation of the query split whose target is in the gallery (generated), or the catalog's stored list
    in its order, less the manipulations of queries the index does not hold (counted; eval.at_once does not apply).
    In the model's codes: a value new since the model was trained is never a target."""
    match = data.match or SchemaMatch.of(catalog.schema, catalog.schema, catalog.url, catalog.url)
    schema = match.model
    if data.protocol == "generated":
        return build_manipulations(
            data.query_labels, data.gallery_labels, schema.names, schema.num_values, cfg.eval.at_once
        )
    stored = catalog.protocol()
    change, target = match.catalog_order_to_model(stored["change"]), match.catalog_order_to_model(stored["target"])
    predictable = ~((change == NOT_IN_MODEL) | (target == NOT_IN_MODEL)).any(axis=1)  # (M,)
    manipulations = stored_manipulations(
        stored["query"][predictable], change[predictable], target[predictable], data.query_ids, schema.names
    )
    unpredictable = int((~predictable).sum())
    dropped = len(stored["query"]) - unpredictable - len(manipulations)
    if dropped:
        also = (
            f" or hold a value new since the model was trained ({len(data.queries_unpredictable):,})"
            if data.queries_unpredictable
            else ""
        )
        console.print(
            f"stored query list: {dropped:,} of {len(stored['query']):,} manipulations left out: their "
            f"{len(data.queries_rejected):,} query image(s) are not in the index (rejected by the pack or the "
            f"index){also}"
        )
    if unpredictable:
        console.print(
            f"stored query list: {unpredictable:,} of {len(stored['query']):,} manipulations left out: they change "
            "to or keep a value new since the model was trained"
        )
    if not len(manipulations):
        raise CatalogError(
            f"{catalog.url}: none of the stored query list's {len(stored['query']):,} manipulations has its query "
            "in the index"
        )
    return manipulations


def _print_left_out(opened: Opened, catalog_url: str, data: EvalData) -> None:
    """On the terminal, not only in results.json: gallery images the index lacks and queries left out (counts and
    the first few ids)."""

    def first(ids: list[str]) -> str:
        return ", ".join(ids[:SHOWN]) + (", ..." if len(ids) > SHOWN else "")

    missing, reader = data.gallery_missing, opened.reader
    if missing:
        rejected = {r.id for r in reader.manifest.rejected}
        why = sum(i in rejected for i in missing)
        console.print(
            f"gallery: {len(missing):,} of the {len(missing) + len(data.gallery_ids):,} gallery images of "
            f"{catalog_url} are not in the index {reader.url} ({why:,} rejected by it, {len(missing) - why:,} never "
            f"indexed), left out: {first(missing)}"
        )
    if data.queries_unpredictable:
        console.print(
            f"queries: {len(data.queries_unpredictable):,} left out, their labels hold a value new since the model "
            f"was trained: {first(data.queries_unpredictable)}"
        )


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("id")


def _aligned(rows: dict[str, np.ndarray], ids: np.ndarray, names: list[str]) -> np.ndarray:
    """Catalog label rows -> (len(ids), A) in the order of ``ids``."""
    position = {i: n for n, i in enumerate(rows["id"].astype(str).tolist())}
    order = np.array([position[i] for i in ids.tolist()], dtype=np.int64)
    return (
        np.stack([rows[n].astype(np.int64)[order] for n in names], axis=1)
        if len(ids)
        else np.zeros((0, len(names)), np.int64)
    )


def retrieval_examples(
    cfg: Config,
    opened: Opened,
    data: EvalData,
    manipulations: Manipulations,
    positions: np.ndarray,
    method: str,
) -> list[Example]:
    """cfg.report.examples manipulations, one group after another, picked with the split seed: the query, the
    change, the top results with exact matches marked, and the explain PNG (base64)."""
    rng = np.random.default_rng(cfg.split.seed)
    catalog, model, image_size = opened.catalog, opened.model, opened.reader.manifest.image_size
    schema = model.schema  # the labels in ``data`` are in the model's codes
    groups = [g for g in range(len(manipulations.groups)) if (manipulations.group == g).any()]
    picks = []
    for n in range(min(cfg.report.examples, len(manipulations))):
        candidates = np.flatnonzero(manipulations.group == groups[n % len(groups)])
        picks.append(int(rng.choice(candidates)))
    examples = []
    for m in picks:
        q = int(manipulations.query[m])
        top = positions[m, :EXAMPLE_RESULTS]
        ids = [data.gallery_ids[p] for p in top]
        matches = [bool((data.gallery_labels[p] == manipulations.target[m]).all()) for p in top]
        blobs = catalog.rows([data.query_ids[q], *ids], ["id", "image"])
        image = dict(zip(blobs["id"].astype(str).tolist(), blobs["image"].tolist()))
        change = manipulations.change[m].astype(np.int64)
        png = explain_png(
            model, schema, image_size, image[data.query_ids[q]], change, [image[i] for i in ids], ids, matches
        )
        words = [
            f"{schema.names[a]}: {_value_text(schema, a, int(data.query_labels[q, a]))} -> "
            f"{schema.value_name(schema.names[a], int(v))}"
            for a, v in enumerate(change)
            if v >= 0
        ]
        examples.append(
            Example(
                method=method,
                query=str(data.query_ids[q]),
                change=", ".join(words),
                results=[Hit(id=i, match=ok) for i, ok in zip(ids, matches)],
                png=base64.b64encode(png).decode("ascii"),
            )
        )
    return examples


def _value_text(schema, attribute: int, value: int) -> str:
    """A value's name, '?' when unknown (a stored query list may change an attribute the query has no value for)."""
    return schema.value_name(schema.names[attribute], value) if value >= 0 else "?"


def hardware() -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "gpu": gpu,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def _index_rate(reader: IndexReader) -> float | None:
    extracted = sum(s.rows for s in reader.manifest.shards if s.reused_from is None)
    seconds = reader.manifest.timings.get("extract")
    return extracted / seconds if seconds and extracted else None


def _training_summary(storage: Storage, model_url: str) -> dict[str, Any] | None:
    """train_summary.json beside the model, when the model came from fsnet train."""
    url = join(parent(model_url), "train_summary.json")
    if not storage.exists(url):
        return None
    return json.loads(storage.read_text(url))


def print_results(results: Results) -> None:
    """The Top-20 (or Top-k_max) table of every run (each average with half its interval, when recorded), how fast
    the model's Top-K was, and the headline: the model against the probe."""
    first = results.runs[0]
    at = min(20, first.k[-1])
    names = list(first.groups)
    d = results.dataset
    table = Table(
        title=f"Top-{at} accuracy ({d.manipulations:,} manipulations, {d.queries:,} queries, "
        f"{d.gallery:,} gallery images)"
    )
    probe = next((r for r in results.runs if r.method == PROBE), None)
    table.add_column("method")
    table.add_column("average", justify="right")  # first: a narrow terminal drops attributes from the right
    if probe is not None:
        table.add_column("vs probe", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for run in results.runs:
        vs = [] if probe is None else [f"{run.average.top_k[at - 1] - probe.average.top_k[at - 1]:+.3f}"]
        average = banded(run.average.top_k[at - 1], band_at(run.average, "top_k", at))  # 0.980 ± 0.012 with intervals
        table.add_row(run.method, average, *vs, *[f"{run.groups[n].top_k[at - 1]:.3f}" for n in names])
    show(console, table, where=RESULTS_FILE)
    if any(band_at(r.average, "top_k", at) for r in results.runs):
        console.print(interval_note([results]), highlight=False)
    t = results.timings or {}
    line = (
        f"Top-K of every manipulation: {t['topk']:.2f} s ({results.throughput.manipulations_per_s:,.0f} "
        "manipulations/s)"
    )
    if results.check:
        line += f"; brute force (faiss) {t['brute_force']:.2f} s, identical hits"
    console.print(line)
    if results.probe and results.probe.mean_accuracy is not None and results.model.mean_accuracy is not None:
        p = results.probe
        fit = "its fit read back from the trunk cache" if p.fit_reused else f"fitted in {p.fit_s:.1f} s"
        console.print(
            f"held-out classifier accuracy (mean over attributes): {results.model.mean_accuracy:.3f} the model, "
            f"{p.mean_accuracy:.3f} the probe ({p.backbone} frozen at {p.image_size} px, {fit})"
        )
    for headline in headlines([results], at):  # the model against its yardstick, as the report opens
        console.print(f"[bold]{headline_text(headline, at)}[/]", highlight=False)


def cli(
    index_url: Annotated[
        str, typer.Option("--index", callback=absolute_option, help="Index URL (its CURRENT version).")
    ],
    catalog: Annotated[
        str, typer.Option("--catalog", callback=absolute_option, help="Packed catalog URL: splits and labels.")
    ],
    out: Annotated[str, typer.Option("--out", "-o", callback=absolute_option, help="Folder URL for results.json.")],
    check: Annotated[
        bool, typer.Option("--check", help="Also run the faiss brute-force reference and require identical hits.")
    ] = False,
    allow_catalog_mismatch: Annotated[
        bool,
        typer.Option(
            "--allow-catalog-mismatch",
            help="Evaluate even when --catalog is not the catalog the index was built from (another split or shards).",
        ),
    ] = False,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> None:
    """Apply every attribute manipulation to every query and measure Top-K / NDCG against the gallery."""
    cfg = resolve_config(config, set_)
    results = evaluate(cfg, index_url, catalog, out, check, allow_catalog_mismatch)
    print_results(Results.model_validate(results))
    console.print(f"wrote {join(out, RESULTS_FILE)}")


if __name__ == "__main__":
    run_app(single_command(cli))
