"""Search an index with attribute manipulation: "this one, but in black".

    fsnet search --index fsnet-demo/index --id 000123 --change color=black -k 10
    fsnet search --index fsnet-demo/index --image shirt.jpg --change sleeve=long --change color=red --explain out.png

The query's attribute representations come from the index (an indexed id), the catalog (another id) or the model
(an image file); each --change replaces that attribute's representation by its memory-block row; faiss returns the
nearest gallery images to the manipulated global representation. The target is the query's attribute values
(known labels, else the model's predictions) with the manipulations applied; a result "matches" when its
attribute values equal the target.

A model with a fusion weight (model.pt's ``logp_weight``, chosen by training on its validation images: the
``<method>+logp`` row of fsnet evaluate) ranks as that row does: faiss's ``--candidates`` nearest are re-ranked by
distance + weight x -log P(image has the target's values) under the classifiers (eval/attr_logp.py; a known label
counts as a sure value). Exact when the candidates cover the index; an image outside them is not seen, however
likely its values. ``--no-fused`` ranks by the distance alone.

The model's codes are the working space: the index's and the catalog's labels are translated to them by value name
(fsnet/schema_match.py), so a model trained before a re-pack still searches correctly; a value new since the model
was trained cannot be a --change target, and a query's such value counts as unknown (the model's prediction stands
in).

``--set`` overrides a config key, as on every command. Until the next release, a ``--set ATTRIBUTE=VALUE`` whose key
is not a config key (its first part is no config section) is still a manipulation, with one warning line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import numpy as np
import torch
import typer
from rich.table import Table

from eval.attr_logp import TargetNlogp
from fsnet.catalog.image_check import PIL_FORMATS, ImageRejected, check_image
from fsnet.catalog.reader import Catalog
from fsnet.catalog.schema import value_offsets
from fsnet.columns import column_array
from fsnet.config import Config
from fsnet.decode import decode_batch
from fsnet.errors import FsnetError
from fsnet.explain import explain_png
from fsnet.index.reader import IndexReader
from fsnet.model import RetrievalModel
from fsnet.schema_match import SchemaMatch
from fsnet.storage import Storage
from jobs.command import (
    ConfigOption,
    SetOption,
    absolute_option,
    console,
    err_console,
    resolve_config,
    run_app,
    single_command,
)
from jobs.tables import show

CANDIDATES = 1000  # faiss's nearest that a fused ranking re-ranks: --candidates


@dataclass
class Query:
    reps: torch.Tensor  # (1, A, D)
    values: np.ndarray  # (A,) the query's values: labels where known, else predictions
    known: np.ndarray  # (A,) bool: the value is a label
    probabilities: np.ndarray  # (C,) the classifiers' softmax per attribute, concatenated
    image: bytes | None  # for --explain


@dataclass
class SearchResult:
    query: Query
    manipulation: np.ndarray  # (A,) target value per attribute, -1 unchanged
    target: np.ndarray  # (A,)
    ids: list[str]
    distances: list[float]
    nlogp: list[float] | None  # -log P(target) per result when ranked with the classifiers (fused), else None
    weight: float | None  # the fusion weight it was ranked with, else None
    values: np.ndarray  # (k, A) result labels in the model's codes (-1 unknown, -2 a value the model does not know)
    matches: list[bool]
    names: list[list[str | None]]  # (k, A) the results' value names as the catalog has them (None unknown)


def parse_manipulations(match: SchemaMatch, items: list[str]) -> np.ndarray:
    """["color=black", ...] -> (A,) target value per attribute in the model's codes (-1 unchanged); unknown names
    list the valid ones; a value only the catalog has says the model was trained before it existed."""
    names = match.names
    manipulation = np.full(len(names), -1, dtype=np.int64)
    given: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise FsnetError(f"--change {item}: expected ATTRIBUTE=VALUE (attributes: {', '.join(names)})")
        attribute, value = (x.strip() for x in item.split("=", 1))
        if attribute in given and given[attribute] != value:  # one value per attribute: never the last one silently
            raise FsnetError(
                f"--change {attribute}={given[attribute]} and --change {attribute}={value}: an attribute changes to "
                "one value; give one"
            )
        given[attribute] = value
        manipulation[match.model.index(attribute)] = match.value_code(attribute, value)
    return manipulation


def split_sets(sets: list[str]) -> tuple[list[str], list[str]]:
    """--set items -> (config overrides, manipulations in the old spelling): a key whose first part names a config
    section (storage.region=...) is a config key; any other (color=black) is a manipulation, deprecated."""
    config, changes = [], []
    for item in sets:
        key = item.split("=", 1)[0].strip()
        (config if key.split(".")[0] in Config.model_fields else changes).append(item)
    return config, changes


def load_query(
    reader: IndexReader,
    model: RetrievalModel,
    match: SchemaMatch,
    storage: Storage,
    query_id: str | None,
    image: bytes | None,
    want_image: bool,
) -> Query:
    """``match``: the model against the schema the index's labels are in (its manifest's); ``image``: the bytes of
    --image, checked by read_query_image."""
    names = match.names
    if image is not None:
        return _embed_query(model, image, reader.manifest.image_size, np.full(len(names), -1))
    rows = reader.embeddings([query_id], ["id", "reps", "predicted", "probabilities", *names])
    if rows.num_rows and not want_image:
        labels = match.to_model(np.array([[rows[a][0].as_py() for a in names]]))[0]  # (A,) the model's codes
        predicted = column_array(rows, "predicted", (len(names),), np.int64)[0]
        reps = torch.from_numpy(column_array(rows, "reps", (len(names), reader.manifest.embed_dim)))
        probabilities = column_array(rows, "probabilities", (-1,))[0]
        values = np.where(labels >= 0, labels, predicted)
        return Query(reps=reps, values=values, known=labels >= 0, probabilities=probabilities, image=None)
    catalog = open_catalog(reader, model, match, storage)
    found = catalog.rows([query_id], ["id", "image", *names])
    if not len(found["id"]):
        raise FsnetError(f"--id {query_id}: not in the index {reader.url} nor in its catalog {reader.manifest.catalog}")
    now = SchemaMatch.of(
        model.schema, catalog.schema, match.model_url, catalog.url
    )  # the catalog as it is now may be re-packed
    labels = now.to_model(np.array([[int(found[a][0]) for a in names]]))[0]
    return _embed_query(model, found["image"][0], reader.manifest.image_size, labels)


def open_catalog(reader: IndexReader, model: RetrievalModel, match: SchemaMatch, storage: Storage) -> Catalog:
    """The catalog the index was built from, as it is now; one line when it has changed since (search goes on:
    ids and images are read by id, labels translated by name)."""
    catalog = Catalog.open(reader.manifest.catalog, storage)
    changed = reader.check_catalog(catalog.url, catalog.manifest, allow=True)
    if changed:
        console.print(f"note: {changed} (re-packed since; fsnet reindex brings the index up to date)")
    if catalog.schema != match.catalog:
        note = SchemaMatch.of(model.schema, catalog.schema, match.model_url, catalog.url).note()
        if note:
            console.print(note)
    return catalog


def read_query_image(storage: Storage, url: str) -> bytes:
    """The bytes of ``--image``, decoded once here so that an empty, cut-short or non-image file is one line naming
    it (any format PIL reads: a query need not be in the catalog's ``catalog.formats``)."""
    blob = storage.read_bytes(url)
    try:
        check_image(blob, PIL_FORMATS)
    except ImageRejected as rejected:
        raise FsnetError(f"--image {url}: {rejected.reason}: {rejected.detail}") from None
    return blob


def _embed_query(model: RetrievalModel, blob: bytes, size: int, labels: np.ndarray) -> Query:
    with torch.no_grad():
        emb = model.embed(decode_batch([blob], size))
    predicted, probabilities = emb.predicted[0].numpy(), emb.probabilities[0].numpy()
    values = np.where(labels >= 0, labels, predicted)
    return Query(reps=emb.reps, values=values, known=labels >= 0, probabilities=probabilities, image=blob)


def query_distribution(query: Query, num_values: list[int]) -> np.ndarray:
    """(C,) the query's values as the classifiers' term reads them: a known label is a sure value (one-hot), an
    unknown one the classifiers' softmax."""
    out = query.probabilities.astype(np.float32).copy()
    for a, lo in enumerate(value_offsets(num_values)):
        if query.known[a]:
            out[lo : lo + num_values[a]] = 0.0
            out[lo + query.values[a]] = 1.0
    return out


def run_search(
    reader: IndexReader,
    match: SchemaMatch,
    model: RetrievalModel,
    query: Query,
    manipulation: np.ndarray,
    k: int,
    candidates: int = CANDIDATES,
    fused: bool = True,
) -> SearchResult:
    """The k nearest by distance, or with the model's fusion weight (and ``fused``) the ``candidates`` nearest
    re-ranked by distance + weight x -log P(target), ties in faiss's order."""
    names = match.names
    weight = model.logp_weight if fused else None
    with torch.no_grad():
        values = (
            torch.from_numpy(query.values).long().unsqueeze(0)
        )  # labels where known, else predictions (ADDE-style memory)
        vector = model.global_representation(query.reps, torch.from_numpy(manipulation).unsqueeze(0), values).numpy()
    distances, ids = reader.search(vector, k if weight is None else max(k, candidates))
    found = [i for i in ids[0].tolist() if i is not None]
    distances = distances[0][: len(found)]
    rows = reader.embeddings(found, ["id", *names, *(["probabilities"] if weight is not None else [])])
    by_id = {rows["id"][i].as_py(): i for i in range(rows.num_rows)}
    order = [by_id[i] for i in found]  # the rows in faiss's order
    nlogp = None
    if weight is not None and found:
        num_values = list(match.model.num_values)
        probabilities = column_array(rows, "probabilities", (sum(num_values),))[order]  # (n, C)
        term = (
            TargetNlogp(probabilities, num_values)
            .rows(query_distribution(query, num_values)[None], np.zeros(1, np.int64), manipulation[None])[0]
            .numpy()
        )  # (n,)
        best = np.lexsort((np.arange(len(found)), distances + weight * term))[:k]
        found, distances, order, nlogp = [found[i] for i in best], distances[best], [order[i] for i in best], term[best]
    labels = np.array([[rows[a][r].as_py() for a in names] for r in order], dtype=np.int64).reshape(
        len(found), len(names)
    )
    values = match.to_model(labels)  # (k, A) the index holds the catalog's codes
    target = np.where(manipulation >= 0, manipulation, query.values)
    return SearchResult(
        query=query,
        manipulation=manipulation,
        target=target,
        ids=found,
        distances=distances.tolist(),
        nlogp=None if nlogp is None else nlogp.tolist(),
        weight=None if nlogp is None else weight,
        values=values,
        matches=[bool((v == target).all()) for v in values],
        names=[[match.catalog.value_name(a, int(x)) for a, x in zip(names, row)] for row in labels],
    )


def print_result(match: SchemaMatch, r: SearchResult) -> None:
    schema, names = match.model, match.names
    changed = {names[a] for a in np.flatnonzero(r.manipulation >= 0)}
    target = ", ".join(
        f"{n}={schema.value_name(n, int(v))}" + ("*" if n in changed else "") for n, v in zip(names, r.target)
    )
    ranked = "" if not r.weight else f"; ranked by distance + {r.weight:.3g} x -log P(target)"
    table = Table(title=f"target: {target}  (* manipulated{ranked})")
    scores = ("distance",) if r.nlogp is None else ("distance", "-log P")
    # the changed attributes first, the others after: a narrow terminal drops columns from the right
    order = [n for n in names if n in changed] + [n for n in names if n not in changed]
    for column in ("rank", "id", "match", *scores, *order):
        wide = max([len(i) for i in r.ids] + [2]) if column == "id" else None  # ids are never cut short
        table.add_column(
            column,
            justify="right" if column in ("rank", *scores) else "left",
            min_width=wide,
            no_wrap=column == "id",
        )
    nlogp = r.nlogp if r.nlogp is not None else [None] * len(r.ids)
    for rank, (i, d, p, v, m) in enumerate(zip(r.ids, r.distances, nlogp, r.names, r.matches), start=1):
        value = dict(zip(names, v))
        cells = [(f"[bold]{value[n]}[/]" if n in changed else value[n]) if value[n] is not None else "?" for n in order]
        shown = [f"{d:.3f}"] if p is None else [f"{d:.3f}", f"{p:.3f}"]
        table.add_row(str(rank), i, "[green]yes[/]" if m else "no", *shown, *cells)
    show(console, table, keep=3)


def explain(
    reader: IndexReader, model: RetrievalModel, match: SchemaMatch, storage: Storage, r: SearchResult, path: str
) -> None:
    """Query with the manipulated attribute's activation map and box, then the results (matches framed green)."""
    found = Catalog.open(reader.manifest.catalog, storage).rows(r.ids, ["id", "image"])  # by id: a re-pack keeps ids
    images = dict(zip(found["id"].tolist(), found["image"].tolist()))
    gone = [i for i in r.ids if i not in images]
    if gone:
        raise FsnetError(
            f"--explain: {len(gone)} result image(s) ({', '.join(gone[:3])}) are no longer in the catalog "
            f"{reader.manifest.catalog} the index {reader.url} was built from; re-index it with fsnet reindex"
        )
    png = explain_png(
        model,
        match.model,
        reader.manifest.image_size,
        r.query.image,
        r.manipulation,
        [images[i] for i in r.ids],
        r.ids,
        r.matches,
    )
    storage.write_bytes(path, png)


def cli(
    index_url: Annotated[
        str, typer.Option("--index", callback=absolute_option, help="Index URL (its CURRENT version is searched).")
    ],
    query_id: Annotated[Optional[str], typer.Option("--id", help="Query by catalog id.")] = None,
    image: Annotated[
        Optional[str], typer.Option("--image", callback=absolute_option, help="Query by an image file (path or URL).")
    ] = None,
    changes: Annotated[
        Optional[list[str]], typer.Option("--change", help="ATTRIBUTE=VALUE to change; repeatable.")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="Results to show.")] = 10,
    fused: Annotated[
        bool,
        typer.Option(
            "--fused/--no-fused",
            help="With the model's fusion weight (model.pt): re-rank by distance + weight x -log P(target).",
        ),
    ] = True,
    candidates: Annotated[
        int, typer.Option("--candidates", min=1, help="Nearest images a fused ranking re-ranks.")
    ] = CANDIDATES,
    explain_to: Annotated[
        Optional[str],
        typer.Option(
            "--explain", callback=absolute_option, help="Write a PNG: the query's activation map and box, the results."
        ),
    ] = None,
    config: ConfigOption = None,
    set_: SetOption = None,
) -> SearchResult:
    """Search an index for a query image with its attributes changed."""
    if (query_id is None) == (image is None):
        raise FsnetError("give exactly one of --id or --image")
    sets, old_changes = split_sets(set_ or [])
    if old_changes:  # the spelling before --change: accepted for one release
        new = " ".join(f"--change {c}" for c in old_changes)
        err_console.print(
            f"warning: {' '.join(f'--set {c}' for c in old_changes)} on fsnet search is deprecated: use {new} "
            "(--set overrides a config key, as on every command)",
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
    cfg = resolve_config(config, sets)
    storage = Storage(cfg.storage)
    # not an image: one line naming it, before the index and the model load
    image_bytes = read_query_image(storage, image) if image is not None else None
    reader = IndexReader.open(index_url, storage)
    model = reader.model()  # the index's model, its bytes checked against the manifest's sha256
    # the index's labels are in the codes of the catalog it was built from (its manifest); the model's may differ
    match = SchemaMatch.of(
        model.schema, reader.manifest.attribute_schema(), reader.manifest.model.url, reader.manifest.catalog
    )
    if note := match.note():
        console.print(note)
    manipulation = parse_manipulations(match, [*(changes or []), *old_changes])
    query = load_query(reader, model, match, storage, query_id, image_bytes, want_image=explain_to is not None)
    result = run_search(reader, match, model, query, manipulation, k, candidates, fused)
    print_result(match, result)
    if explain_to:
        explain(reader, model, match, storage, result, explain_to)
        console.print(f"wrote {explain_to}")
    return result  # for a caller of the command (tests, a notebook); the terminal gets the table


if __name__ == "__main__":
    run_app(single_command(cli))
