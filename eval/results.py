"""``results.json``: what one ``fsnet evaluate`` run measured, and what ``fsnet report`` and ``fsnet ablation`` read.

Format 2 (this one) names each run's role (``"model"`` or ``"baseline"``); format 1 had ``kind``, ``"fsnet"`` for
every model (an ADDE-style run included) and ``"baseline"``. ``read_results`` reads both, translating ``kind`` to
``role``. Format-1 files grew keys over time without a new number, and a hand-made file may hold only what the
report reads: the fields the report reads are required, every other one may be absent (None) in a format-1 file.
A file fsnet evaluate writes today holds every field; fields added to format 2 later (``probe``,
``probe_unavailable``, ``model.accuracy``, the curves' ``interval``, ``bootstrap``, ``headline``,
``dataset.fingerprint``) are optional, absent in the files written before them.

Beside it, ``outcomes.parquet`` (eval/outcomes.py) holds each manipulation's query, group and every run's
first-hit rank: what ``fsnet compare`` and the re-index gate resample.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from fsnet.errors import FsnetError
from fsnet.storage import Storage

RESULTS_FILE = "results.json"
FORMAT_VERSION = 2
READABLE = (1, FORMAT_VERSION)
LEGACY_KINDS = {"fsnet": "model", "baseline": "baseline"}  # format 1's run "kind" -> role

Role = Literal["model", "baseline"]


class ResultsError(FsnetError):
    """A results.json that is not one, or one of a format this fsnet cannot read."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Band(_Model):
    """A curve's 95% interval at each K (eval/bootstrap.py: a bootstrap over queries)."""

    low: list[float]
    """The lower end at K = 1..k_max."""
    high: list[float]
    """The upper end at K = 1..k_max."""


class Curves(_Model):
    """One group's curves over K = 1..k_max (eval/metrics.py defines them)."""

    count: int | None = None
    """Manipulations in the group."""
    top_k: list[float]
    """Top-K accuracy: the fraction of the group's manipulations with an exact target match in the first K."""
    ndcg_full: list[float] | None = None
    """NDCG@K with graded relevance (the fraction of target attributes an image has)."""
    ndcg_attribute: list[float] | None = None
    """NDCG@K with relevance 1 when an image has the changed attribute(s)' new value(s)."""
    interval: dict[str, Band] | None = None
    """Per curve (``top_k``, ``ndcg_full``, ``ndcg_attribute``) its interval at every K; None in files written
    before intervals were recorded."""


class Average(Curves):
    """The curves averaged over groups (each attribute counts once, as in the paper's Table 1)."""

    count: int | None = None
    """Every manipulation evaluated."""
    ndcg_full: list[float]
    """NDCG@K, full target, averaged over groups."""
    ndcg_attribute: list[float]
    """NDCG@K, manipulated attribute, averaged over groups."""


class Run(_Model):
    """One ranking of every manipulation: the model's or a baseline's."""

    method: str
    """The model's variant (``full``, ``rank_lg``, ..., ``adde``) or the baseline's name (``attr_logp``)."""
    role: Role
    """``model``: the trained model's factorized Top-K; ``baseline``: a ranking the report compares it with."""
    k: list[int]
    """K = 1..k_max, the x axis of every curve."""
    groups: dict[str, Curves]
    """Per group of manipulations (the attribute(s) changed, ``gender+colour`` for several at once)."""
    average: Average
    """Over groups."""


class Listed(_Model):
    """Images left out: every one counted, the first ones named."""

    count: int
    """How many."""
    ids: list[str] | None = None
    """The first 50 of their ids."""


class Dataset(_Model):
    """What was evaluated: the catalog, its query and gallery images, the manipulations."""

    catalog: str
    """The catalog's URL."""
    source: dict[str, Any] | None = None
    """The catalog's source, as its catalog.json records it."""
    attributes: dict[str, list[str]] | None = None
    """The model's attributes and values: the codes of every result."""
    not_in_model: dict[str, list[str]] | None = None
    """Catalog values new since the model was trained: never a target."""
    catalog_mismatch: str | None = None
    """How the catalog differs from the index's (evaluated with --allow-catalog-mismatch); None: it does not."""
    queries: int
    """Query images evaluated."""
    gallery: int
    """Gallery images ranked."""
    manipulations: int
    """Manipulations evaluated (every one of each query's whose target exists in the gallery)."""
    at_once: int | None = None
    """Attributes changed at once (eval.at_once); None with the catalog's stored query list."""
    protocol: Literal["generated", "catalog"] | None = None
    """``generated``: every manipulation of the query split; ``catalog``: the catalog's stored query list."""
    protocol_rows: int | None = None
    """The stored query list's manipulations (before those left out); None for the generated protocol."""
    counts: dict[str, int] | None = None
    """Manipulations per group."""
    fingerprint: Fingerprint | None = None
    """Queries, gallery and manipulations hashed: ``fsnet compare`` pairs two evaluations only when they agree;
    None in files written before it was recorded."""
    gallery_missing: Listed
    """Gallery images the index does not hold (rejected by it, or never indexed): left out."""
    queries_rejected: Listed | None = None
    """Query images the model could not embed (or, stored list: not in the index): left out."""
    queries_unpredictable: Listed | None = None
    """Queries with a label value new since the model was trained: left out."""


class Fingerprint(_Model):
    """What makes two evaluations comparable manipulation by manipulation (sha256 prefixes)."""

    queries: str
    """The query images' ids, in order."""
    gallery: str
    """The gallery images' ids, in order."""
    manipulations: str
    """Every manipulation: its query and its new values, in order."""


class Bootstrap(_Model):
    """How the intervals were drawn (eval/bootstrap.py)."""

    resamples: int
    """Resamples of the queries."""
    confidence: float
    """The intervals' coverage (0.95: the 2.5th and 97.5th percentiles)."""
    seed: int
    """The resamples' seed."""
    unit: Literal["query"] = "query"
    """What is resampled: queries, every manipulation of a drawn query with it."""


class Difference(_Model):
    """One run's Top-K against another's on the same manipulations, with a paired bootstrap interval."""

    method: str
    """The run measured."""
    against: str
    """The run it is compared with."""
    k: int
    """K of the Top-K."""
    value: float
    """Its Top-K averaged over groups."""
    reference: float
    """The other run's."""
    difference: float
    """value - reference."""
    low: float
    """The interval's lower end."""
    high: float
    """The interval's upper end."""
    share_not_above: float
    """The share of resamples where the difference is <= 0."""


class ModelFacts(_Model):
    """The model the index was built with."""

    url: str | None = None
    """Where it was loaded from."""
    sha256: str | None = None
    """The checkpoint's hash, as the index manifest records it."""
    variant: str | None
    """Its method: a FashionSearchNet variant or ``adde``."""
    backbone: str
    """Its backbone (model.backbone)."""
    image_size: int
    """Its input size in pixels."""
    embed_dim: int | None = None
    """D: the width of each attribute representation."""
    global_dim: int | None = None
    """r: the width of the global representation the gallery is ranked by."""
    accuracy: dict[str, float | None] | None = None
    """Held-out accuracy of its attribute classifiers per attribute, on the query and gallery images (each once;
    unknown labels do not count; None: no known label); None in files written before it was recorded."""
    mean_accuracy: float | None = None
    """The mean of ``accuracy`` over the attributes that have one."""


class ProbeFacts(_Model):
    """The linear probe the ``probe`` and ``probe_attributes`` baselines rank with (eval/probe.py)."""

    backbone: str
    """The frozen trunk: the index's model's backbone."""
    weights: str
    """Its pretrained weights (``none``: a seeded random trunk, a random-feature probe)."""
    image_size: int
    """The trunk's input size in pixels (probe.image_size, or the model's)."""
    features: int
    """F: pooled trunk features per image."""
    cache: str
    """The trunk feature cache entry it read."""
    fit_images: int
    """Training images it was fitted on: the training split less the validation images (labelled or not)."""
    validation_images: int
    """Validation images the strengths were chosen on."""
    strength: dict[str, float | None]
    """The inverse L2 strength kept per attribute (None: the fit images have one value, a constant)."""
    validation_accuracy: dict[str, float | None]
    """Per attribute, the kept strength's accuracy on the validation images (None: no labelled one)."""
    accuracy: dict[str, float | None]
    """Held-out accuracy per attribute on the query and gallery images (as ``model.accuracy``)."""
    mean_accuracy: float | None
    """The mean of ``accuracy`` over the attributes that have one."""
    fit_s: float
    """Seconds of the fit (every attribute, every strength)."""
    fit_reused: bool = False
    """The fit was read back from the trunk cache, where an identical fit (the same features, labels and strengths:
    training's probe expert, or an earlier evaluation) kept it; ``fit_s`` is that fit's."""
    gallery_rejected: Listed
    """Gallery images the trunk cache rejected: ranked last by the probe baselines."""
    queries_rejected: Listed
    """Query images the trunk cache rejected: the probe saw the fit images' mean features for them."""


class IndexFacts(_Model):
    """The index version evaluated."""

    url: str | None = None
    """The index's URL."""
    version: int | None = None
    """Its version (CURRENT when evaluated)."""
    kind: str | None = None
    """The faiss index kind."""
    indexed: int | None = None
    """Images it holds."""
    images_per_s: float | None = None
    """Extraction rate of the images this version embedded; None when it reused every shard."""


class Hardware(_Model):
    """Where the evaluation ran."""

    machine: str
    """platform.machine()."""
    cpus: int | None
    """os.cpu_count()."""
    gpu: str | None
    """The CUDA device's name; None: CPU only."""
    torch: str | None = None
    """torch's version."""
    python: str | None = None
    """Python's version."""


class Throughput(_Model):
    """How fast the model's Top-K of every manipulation was."""

    manipulations_per_s: float
    """Manipulations ranked per second by the factorized evaluator."""
    exact_rows: int | None = None
    """Rows whose float32 candidates were inconclusive and were ranked over the whole gallery in float64."""


class Check(_Model):
    """--check: the faiss brute-force reference run beside the factorized evaluator."""

    identical: bool
    """Both gave the same Top-K lists (else evaluate fails)."""
    factorized_s: float
    """Seconds of the factorized evaluator."""
    brute_force_s: float
    """Seconds of the brute-force reference."""


class Hit(_Model):
    """One result of a retrieval example."""

    id: str
    """The gallery image's id."""
    match: bool
    """It has exactly the target attributes."""


class Example(_Model):
    """A retrieval example (paper Fig. 6)."""

    method: str
    """The run it shows."""
    query: str
    """The query image's id."""
    change: str
    """The manipulation in words (``colour: red -> black``)."""
    results: list[Hit]
    """The first results, nearest first."""
    png: str
    """The explain image (query, its attention, the results), base64 PNG."""


class Results(_Model):
    """One results.json."""

    format: int = FORMAT_VERSION
    """The format's number (read_results reads 1 and 2)."""
    fsnet_version: str | None = None
    """fsnet's version that wrote it."""
    created: str | None = None
    """When, ISO 8601 UTC."""
    dataset: Dataset
    """What was evaluated."""
    model: ModelFacts
    """The model."""
    index: IndexFacts
    """The index."""
    training: dict[str, Any] | None = None
    """train_summary.json beside the model (its own format); None when the model did not come from fsnet train."""
    hardware: Hardware
    """Where it ran."""
    timings: dict[str, float] | None = None
    """Seconds per step (load, protocol, topk, each baseline, brute_force, metrics, examples, total)."""
    throughput: Throughput
    """The model's ranking speed."""
    check: Check | None = None
    """The brute-force comparison; None without --check."""
    runs: list[Run]
    """The model's run first, then each baseline's."""
    probe: ProbeFacts | None = None
    """The probe baselines' linear probe; None when neither was asked for or it could not be built."""
    probe_unavailable: str | None = None
    """Why the probe baselines asked for could not be built (one line); None otherwise."""
    bootstrap: Bootstrap | None = None
    """How the curves' intervals were drawn; None in files written before intervals were recorded."""
    headline: Difference | None = None
    """The model's best ranking against the probe at Top-20, paired; None without a probe run."""
    examples: list[Example] = []
    """Retrieval examples of the model's run (report.examples of them)."""
    config: dict[str, Any] | None = None
    """The resolved config, secrets dropped."""

    @property
    def model_run(self) -> Run:
        """The run of the trained model (the first)."""
        return next(r for r in self.runs if r.role == "model")

    def dumps(self) -> str:
        """The file's text, as evaluate writes it."""
        return json.dumps(self.model_dump(mode="json"), indent=1)


def load_results(storage: Storage, url: str) -> Results:
    """One results.json at ``url``; a missing file or one that is not a results.json is one line naming it."""
    if not storage.exists(url):
        raise ResultsError(f"{url}: no such results file (make one with fsnet evaluate)")
    return read_results(storage.read_bytes(url), url)


def read_results(text: str | bytes, name: str) -> Results:
    """A results.json's text -> Results; format 1 is translated (run ``kind`` -> ``role``). Anything else, or a file
    without a key the report reads: one ResultsError line naming ``name`` (and the key)."""
    try:
        data = json.loads(text)
    except ValueError as err:  # UnicodeDecodeError included
        raise ResultsError(f"{name}: not an fsnet results.json ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict):
        raise ResultsError(
            f"{name}: not an fsnet results.json (a JSON {type(data).__name__}; fsnet evaluate writes an object "
            "with 'runs')"
        )
    version = data.get("format", 1)  # hand-made format-1 files may leave it out
    if version not in READABLE:
        raise ResultsError(
            f"{name}: results format {version!r}, this fsnet reads formats {', '.join(map(str, READABLE))} "
            "(written by a newer fsnet? evaluate again, or upgrade)"
        )
    if version == 1:
        data = _from_format_1(data)
    try:
        return Results.model_validate(data)
    except ValidationError as err:
        raise ResultsError(f"{name}: {_first_problem(err)}") from None


def _from_format_1(data: dict[str, Any]) -> dict[str, Any]:
    """Format 1 -> format 2: each run's ``kind`` ("fsnet" or "baseline") becomes its ``role``."""
    runs = data.get("runs")
    if not isinstance(runs, list):
        return {**data, "format": FORMAT_VERSION}  # validation names what is wrong with it
    translated = []
    for run in runs:
        if isinstance(run, dict) and "kind" in run:
            run = {k: v for k, v in run.items() if k != "kind"} | {"role": LEGACY_KINDS.get(run["kind"], run["kind"])}
        translated.append(run)
    return {**data, "format": FORMAT_VERSION, "runs": translated}


def _first_problem(err: ValidationError) -> str:
    """The first validation error as one phrase: ``runs[1] has no 'method'``, ``no 'model.variant'``, ``'runs' is a
    dict, not a list``."""
    problem = err.errors()[0]
    loc = [str(p) for p in problem["loc"]]
    why = "(not an fsnet results.json, or one this report cannot read)"
    if loc[:1] == ["runs"] and len(loc) > 1 and loc[1].isdigit():
        where, key = f"runs[{loc[1]}] ", ".".join(loc[2:])
    else:
        where, key = "", ".".join(loc)
    if problem["type"] == "missing":
        return f"{where}has no '{key}' {why}" if where else f"no '{key}' {why}"
    if problem["type"] in ("list_type", "dict_type", "model_type"):
        expected = "a list" if problem["type"] == "list_type" else "an object"
        return f"{where}'{key}' is a {type(problem['input']).__name__}, not {expected}"
    return f"{where}'{key}': {problem['msg']} {why}"
