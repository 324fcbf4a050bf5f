"""A catalog that changes under a trained model (issue 13, part 8): index / reindex / evaluate / search compare the
model's schema with the catalog's by value name.

The drifted catalogs are built explicitly, whatever the pack does with codes: the same images and labels with some
colours renamed to a value the model never saw, packed to a new URL, once as "indigo" (sorts between green and
orange: every later colour's code shifts) and once as "zinc" (sorts last: the old codes stay). A third model is the
trained one with its colour values in another order (rows of its classifiers and memory block permuted): the same
function, other codes."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from eval.protocol import build_manipulations
from fsnet.catalog.reader import Catalog
from fsnet.catalog.schema import Attribute, AttributeSchema
from fsnet.config import load_config
from fsnet.index.reader import IndexReader
from fsnet.model import build_model, load_model, save_model
from fsnet.schema_match import SchemaMatch
from fsnet.storage import Storage
from jobs.cli import app
from jobs.evaluate import evaluate
from jobs.index import index
from jobs.pack import pack
from jobs.search import load_query, parse_manipulations, run_search
from tests.jobs.tiny_model import tiny_catalog_and_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

FSNET = [sys.executable, "-m", "jobs.cli"]
EVERY = 8  # every 8th image gets the new colour: some land in the query split, some in the gallery


def flat(text: str) -> str:
    """Console output with rich's wrapping undone (wrapping turns a space into a line break)."""
    return " ".join(text.split())


def relabelled(made: dict, name: str, edit) -> str:
    """The synthetic catalog's images with ``edit`` applied to its label table, packed to a new URL."""
    source = made["root"] / f"{name}-source"
    source.mkdir()
    table = pd.read_csv(made["root"] / "synth" / "labels.csv", dtype=str, keep_default_na=False)
    edit(table).to_csv(source / "labels.csv", index=False)
    url = str(made["root"] / name)
    sets = [f"source.path={source}", f"source.images={made['root'] / 'synth' / 'images'}"]
    pack(load_config(["tiny"], sets), url, show_progress=False)
    return url


def new_colour(value: str):
    def edit(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[table.index % EVERY == 0, "color"] = value
        return table

    return edit


def reordered_model(source_url: str, target_url: str, storage: Storage, attribute: str) -> list[str]:
    """The model at ``source_url`` with ``attribute``'s values reversed (classifier rows and memory rows permuted
    with them): the same function in other codes. Returns the new value order."""
    model = load_model(source_url, storage)
    schema = model.schema
    a = schema.index(attribute)
    old = schema.attributes[a].values
    order = old[::-1]
    perm = torch.tensor([old.index(v) for v in order])  # new code -> old code
    attributes = [Attribute(name=x.name, values=order if i == a else x.values) for i, x in enumerate(schema.attributes)]
    state = model.state_dict()
    for key in (
        f"classifiers.{a}.weight",
        f"classifiers.{a}.bias",
        f"rep_classifiers.{a}.weight",
        f"rep_classifiers.{a}.bias",
    ):
        state[key] = state[key][perm]
    offset = sum(schema.num_values[:a])
    rows = torch.arange(sum(schema.num_values))
    rows[offset : offset + len(old)] = offset + perm  # (C,) the memory rows in the new order
    state["memory.table"], state["memory.counts"] = state["memory.table"][rows], state["memory.counts"][rows]
    new = build_model(model.cfg, AttributeSchema(attributes=attributes), pretrained=False)
    new.load_state_dict(state)
    save_model(new.eval(), target_url, storage)
    return order


@pytest.fixture(scope="module")
def drift(tmp_path_factory, ray_cluster):
    made = tiny_catalog_and_model(tmp_path_factory.mktemp("drift"))
    root, cfg = made["root"], load_config(["tiny"])
    made["mid"] = relabelled(made, "catalog-mid", new_colour("indigo"))
    made["end"] = relabelled(made, "catalog-end", new_colour("zinc"))
    made["reversed"] = reordered_model(made["model"], str(root / "model-reversed.pt"), made["storage"], "color")
    for name, model, catalog in [
        ("index", made["model"], made["catalog"]),
        ("index-mid", made["model"], made["mid"]),
        ("index-end", made["model"], made["end"]),
        ("index-reversed", str(root / "model-reversed.pt"), made["catalog"]),
    ]:
        index(cfg, model, catalog, str(root / name), split="all")
    return made


def test_the_drifted_catalogs_are_what_the_tests_need(drift):
    storage = drift["storage"]
    model = load_model(drift["model"], storage).schema
    mid, end = Catalog.open(drift["mid"], storage).schema, Catalog.open(drift["end"], storage).schema
    colours = model.attributes[model.index("color")].values
    assert "indigo" not in colours and "zinc" not in colours
    assert mid.attributes[mid.index("color")].values == sorted([*colours, "indigo"])  # codes after indigo shifted
    assert end.attributes[end.index("color")].values == [*colours, "zinc"]  # codes kept
    assert (
        SchemaMatch.of(model, mid, "m", "c").recoded == ["color"] and SchemaMatch.of(model, end, "m", "c").recoded == []
    )


def expected_manipulations(catalog: Catalog, model: AttributeSchema) -> tuple[dict, int]:
    """The protocol recomputed by value names: labels re-coded with the model's values, queries holding a value the
    model does not know left out, such values in the gallery never equal to a target."""
    names = model.names

    def by_name(split: str) -> np.ndarray:
        rows = catalog.rows(catalog.split_ids(split).tolist(), ["id", *names])
        out = np.zeros((len(rows["id"]), len(names)), dtype=np.int64)
        for a, n in enumerate(names):
            values = catalog.schema.attributes[catalog.schema.index(n)].values
            model_values = model.attributes[a].values
            out[:, a] = [model_values.index(values[c]) if values[c] in model_values else -2 for c in rows[n]]
        return out

    queries, gallery = by_name("query"), by_name("gallery")
    keep = (queries >= 0).all(axis=1)
    return build_manipulations(queries[keep], gallery, names, model.num_values).counts(), int((~keep).sum())


@pytest.mark.parametrize("which", ["mid", "end"])
def test_evaluate_maps_a_new_value_by_name_and_never_targets_it(drift, which, tmp_path):
    storage, root = drift["storage"], drift["root"]
    out = CliRunner().invoke(
        app,
        ["evaluate", "--index", str(root / f"index-{which}"), "--catalog", drift[which], "--out", str(tmp_path)],
        terminal_width=200,
    )
    assert out.exit_code == 0, out.output
    new = {"mid": "indigo", "end": "zinc"}[which]
    assert flat(out.output).count(new) == 1, out.output  # named once
    results = json.loads((tmp_path / "results.json").read_text())
    dataset = results["dataset"]
    assert dataset["not_in_model"] == {"color": [new]}
    assert new not in dataset["attributes"]["color"]  # the results' codes are the model's

    counts, left_out = expected_manipulations(
        Catalog.open(drift[which], storage), load_model(drift["model"], storage).schema
    )
    assert left_out > 0 and dataset["queries_unpredictable"]["count"] == left_out
    assert f"queries: {left_out} left out" in flat(out.output)
    assert dataset["counts"] == counts and dataset["manipulations"] == sum(counts.values())


def test_shifted_and_kept_codes_evaluate_the_same(drift, tmp_path):
    """The same labels by name, once with shifted codes and once with the old ones: identical results."""
    cfg = load_config(["tiny"], ["report.examples=0"])
    root = drift["root"]
    mid = evaluate(cfg, str(root / "index-mid"), drift["mid"], str(tmp_path / "mid"))
    end = evaluate(cfg, str(root / "index-end"), drift["end"], str(tmp_path / "end"))
    assert mid["dataset"]["counts"] == end["dataset"]["counts"]
    assert [r["method"] for r in mid["runs"]] == ["full", "attribute_only", "attr_logp", "probe", "probe_attributes"]
    for a, b in zip(mid["runs"], end["runs"]):  # two index runs: float noise of other batchings at most
        np.testing.assert_allclose(a["average"]["top_k"], b["average"]["top_k"], err_msg=a["method"])
        np.testing.assert_allclose(a["average"]["ndcg_full"], b["average"]["ndcg_full"], err_msg=a["method"])


def test_a_model_with_its_values_in_another_order_evaluates_as_the_original(drift, tmp_path):
    """The reversed model is the same function in other codes: every run's curves equal the original's."""
    cfg = load_config(["tiny"], ["report.examples=0"])
    root = drift["root"]
    original = evaluate(cfg, str(root / "index"), drift["catalog"], str(tmp_path / "a"))
    reversed_ = evaluate(cfg, str(root / "index-reversed"), drift["catalog"], str(tmp_path / "b"))
    assert reversed_["dataset"]["not_in_model"] == {}
    assert original["dataset"]["counts"] == reversed_["dataset"]["counts"]
    for a, b in zip(original["runs"], reversed_["runs"]):
        np.testing.assert_allclose(a["average"]["top_k"], b["average"]["top_k"], err_msg=a["method"])
        np.testing.assert_allclose(a["average"]["ndcg_full"], b["average"]["ndcg_full"], err_msg=a["method"])


def test_search_matches_by_name_and_refuses_a_value_the_model_never_saw(drift):
    storage, root = drift["storage"], drift["root"]
    catalog = Catalog.open(drift["mid"], storage)
    names = catalog.schema.names
    rows = next(catalog.batches(None, ["id", *names], batch_size=10_000))  # every image: the index holds them all
    text = {n: [catalog.schema.value_name(n, int(c)) for c in rows[n]] for n in names}
    gallery = set(catalog.split_ids("gallery").tolist())
    query = next(i for i, c in enumerate(text["color"]) if c not in ("black", "indigo") and rows["id"][i] in gallery)
    query_id = str(rows["id"][query])

    reader = IndexReader.open(str(root / "index-mid"), storage)
    model = load_model(reader.manifest.model.url, storage)
    match = SchemaMatch.of(
        model.schema, reader.manifest.attribute_schema(), reader.manifest.model.url, reader.manifest.catalog
    )
    result = run_search(
        reader,
        match,
        model,
        load_query(reader, model, match, storage, query_id, None, False),
        parse_manipulations(match, ["color=black"]),
        30,
    )
    target = {n: text[n][query] for n in names} | {"color": "black"}
    by_id = {str(i): r for r, i in enumerate(rows["id"])}
    assert len(result.ids) == 30
    for i, matched, shown in zip(result.ids, result.matches, result.names):  # each result judged by its value names
        assert shown == [text[n][by_id[i]] for n in names]
        assert matched == all(text[n][by_id[i]] == target[n] for n in names), i

    ok = CliRunner().invoke(
        app,
        ["search", "--index", str(root / "index-mid"), "--id", query_id, "--change", "color=black", "-k", "3"],
        terminal_width=200,
    )
    assert ok.exit_code == 0, ok.output
    assert flat(ok.output).count("new since the model was trained") == 1, ok.output
    run = subprocess.run(
        [*FSNET, "search", "--index", str(root / "index-mid"), "--id", query_id, "--change", "color=indigo"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert "color=indigo" in lines[0] and "trained before 'indigo' existed" in lines[0] and drift["model"] in lines[0]


@pytest.mark.parametrize("side", ["catalog", "model"])
def test_an_attribute_on_one_side_only_is_one_line(drift, side, tmp_path):
    if side == "catalog":  # the catalog lacks an attribute the model has
        url = relabelled(drift, "catalog-nosleeve", lambda t: t.drop(columns=["sleeve"]))
        wanted = "attribute 'sleeve' is in the model, not in the catalog"
    else:  # the catalog has one more
        url = relabelled(
            drift, "catalog-season", lambda t: t.assign(season=np.where(t.index % 2 == 0, "summer", "winter"))
        )
        wanted = "attribute 'season' is in the catalog, not in the model"
    run = subprocess.run(
        [*FSNET, "index", "--model", drift["model"], "--catalog", url, "--out", str(tmp_path / "index")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert run.returncode == 2 and len(lines) == 1, run.stderr
    assert wanted in lines[0] and drift["model"] in lines[0] and url in lines[0]
    assert not (tmp_path / "index").exists()  # refused before anything was written


def test_reindex_after_a_repack_with_a_new_value(drift, tmp_path):
    """A catalog re-packed at its URL with a new colour (codes stable or not, whichever the pack gives): the old
    index refuses to evaluate against it, fsnet reindex names the value once, and the result equals a fresh index
    of the same labels."""
    root, cfg = drift["root"], load_config(["tiny"], ["report.examples=0"])
    source = tmp_path / "source"
    source.mkdir()
    table = pd.read_csv(root / "synth" / "labels.csv", dtype=str, keep_default_na=False)
    table.to_csv(source / "labels.csv", index=False)
    sets = [f"source.path={source}", f"source.images={root / 'synth' / 'images'}"]
    url, index_url = str(tmp_path / "catalog"), str(tmp_path / "index")
    pack(load_config(["tiny"], sets), url, show_progress=False)
    index(cfg, drift["model"], url, index_url, split="all")

    new_colour("zinc")(table).to_csv(source / "labels.csv", index=False)
    pack(load_config(["tiny"], sets), url, show_progress=False)
    stale = subprocess.run(
        [*FSNET, "evaluate", "--index", index_url, "--catalog", url, "--out", str(tmp_path / "stale")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    lines = [ln for ln in stale.stderr.splitlines() if ln.strip()]
    assert stale.returncode == 2 and len(lines) == 1 and "not in the index" in lines[0], stale.stderr

    out = CliRunner().invoke(app, ["reindex", "--catalog", url, "--index", index_url], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert flat(out.output).count("zinc") == 1, out.output
    after = evaluate(cfg, index_url, url, str(tmp_path / "eval"))
    fresh = evaluate(cfg, str(root / "index-end"), drift["end"], str(tmp_path / "fresh"))
    assert (
        after["dataset"]["not_in_model"] == {"color": ["zinc"]}
        and after["dataset"]["counts"] == fresh["dataset"]["counts"]
    )
    for a, b in zip(after["runs"], fresh["runs"]):
        np.testing.assert_allclose(a["average"]["top_k"], b["average"]["top_k"], err_msg=a["method"])
