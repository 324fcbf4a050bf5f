"""results.json's schema: a round trip, a format-1 file (run kind -> role), and what is not one (one line)."""

import json

import pytest

from eval.results import FORMAT_VERSION, Results, ResultsError, read_results


def results_dict() -> dict:
    """A complete format-2 results.json (small numbers)."""
    band = {"low": [0.0, 1.0], "high": [1.0, 1.0]}
    curves = {
        "count": 2,
        "top_k": [0.5, 1.0],
        "ndcg_full": [0.4, 0.6],
        "ndcg_attribute": [0.5, 0.7],
        "interval": {"top_k": band, "ndcg_full": band, "ndcg_attribute": band},
    }
    listed = {"count": 0, "ids": []}
    return {
        "format": FORMAT_VERSION,
        "fsnet_version": "0.0",
        "created": "2026-01-01T00:00:00+00:00",
        "dataset": {
            "catalog": "/c",
            "source": {"kind": "folder"},
            "attributes": {"color": ["red", "blue"]},
            "not_in_model": {},
            "catalog_mismatch": None,
            "queries": 2,
            "gallery": 5,
            "manipulations": 2,
            "at_once": 1,
            "protocol": "generated",
            "protocol_rows": None,
            "counts": {"color": 2},
            "gallery_missing": listed,
            "queries_rejected": listed,
            "queries_unpredictable": listed,
            "fingerprint": {"queries": "01", "gallery": "02", "manipulations": "03"},
        },
        "model": {
            "url": "/m.pt",
            "sha256": "ab",
            "variant": "full",
            "backbone": "tiny",
            "image_size": 64,
            "embed_dim": 8,
            "global_dim": 8,
            "accuracy": {"color": 0.5},
            "mean_accuracy": 0.5,
        },
        "index": {"url": "/i", "version": 1, "kind": "flat", "indexed": 7, "images_per_s": None},
        "training": None,
        "hardware": {"machine": "x86_64", "cpus": 2, "gpu": None, "torch": "2", "python": "3.11"},
        "timings": {"topk": 0.1, "total": 1.0},
        "throughput": {"manipulations_per_s": 20.0, "exact_rows": 0},
        "check": None,
        "runs": [
            {"method": "full", "role": "model", "k": [1, 2], "groups": {"color": curves}, "average": curves},
            {"method": "attr_logp", "role": "baseline", "k": [1, 2], "groups": {"color": curves}, "average": curves},
        ],
        "probe": {
            "backbone": "tiny",
            "weights": "none",
            "image_size": 64,
            "features": 4,
            "cache": "/trunk-features/tiny-64px-0123",
            "fit_images": 9,
            "validation_images": 1,
            "strength": {"color": 0.1},
            "validation_accuracy": {"color": None},
            "accuracy": {"color": 0.75},
            "mean_accuracy": 0.75,
            "fit_s": 0.5,
            "fit_reused": False,
            "gallery_rejected": listed,
            "queries_rejected": listed,
        },
        "probe_unavailable": None,
        "bootstrap": {"resamples": 1000, "confidence": 0.95, "seed": 0, "unit": "query"},
        "headline": {
            "method": "full",
            "against": "probe",
            "k": 2,
            "value": 1.0,
            "reference": 0.5,
            "difference": 0.5,
            "low": 0.0,
            "high": 1.0,
            "share_not_above": 0.25,
        },
        "examples": [
            {"method": "full", "query": "q", "change": "color: red -> blue", "results": [], "png": ""},
        ],
        "config": {"eval": {"k_max": 2}},
    }


def test_round_trip():
    results = read_results(json.dumps(results_dict()), "results.json")
    assert results.model_run.method == "full" and [r.role for r in results.runs] == ["model", "baseline"]
    assert json.loads(results.dumps()) == results_dict()  # every field written back as read
    assert read_results(results.dumps().encode(), "again") == results


def test_a_format_1_file_reads_with_each_run_kind_as_its_role():
    old = results_dict()
    old["format"] = 1
    for run, (method, kind) in zip(old["runs"], [("adde", "fsnet"), ("attr_logp", "baseline")]):
        del run["role"]
        run.update(method=method, kind=kind)
    results = read_results(json.dumps(old), "old.json")
    assert results.format == FORMAT_VERSION
    assert [(r.method, r.role) for r in results.runs] == [("adde", "model"), ("attr_logp", "baseline")]
    assert results.runs[0].average.top_k == [0.5, 1.0]


def test_an_early_format_1_file_without_the_later_keys():
    """Format 1 grew keys without a new number: a file before the stored query list and the schema match."""
    old = results_dict()
    del old["format"]
    for key in ("not_in_model", "catalog_mismatch", "protocol", "protocol_rows", "queries_unpredictable"):
        del old["dataset"][key]
    for run in old["runs"]:
        run["kind"] = "fsnet" if run.pop("role") == "model" else "baseline"
    results = read_results(json.dumps(old), "early.json")
    assert results.dataset.protocol is None and results.dataset.queries_unpredictable is None
    assert results.model_run.method == "full"


@pytest.mark.parametrize(
    "content, message",
    [
        ({**results_dict(), "format": 3}, "results format 3, this fsnet reads formats 1, 2"),
        ({**results_dict(), "format": "two"}, "results format 'two'"),
        ([1, 2], "not an fsnet results.json (a JSON list;"),
        ({**results_dict(), "runs": {"full": {}}}, "'runs' is a dict, not a list"),
        ({**results_dict(), "surprise": 1}, "'surprise': Extra inputs are not permitted"),
        ({k: v for k, v in results_dict().items() if k != "dataset"}, "no 'dataset'"),
    ],
)
def test_anything_else_is_one_line_naming_the_file(content, message):
    with pytest.raises(ResultsError) as err:
        read_results(json.dumps(content), "/runs/x/results.json")
    text = str(err.value)
    assert text.startswith("/runs/x/results.json: ") and message in text and "\n" not in text, text


def test_not_json_at_all():
    with pytest.raises(ResultsError, match=r"^r.json: not an fsnet results.json \(JSONDecodeError"):
        read_results("{", "r.json")
    with pytest.raises(ResultsError, match=r"^r.json: not an fsnet results.json \(UnicodeDecodeError"):
        read_results(b"\xff\xfe{", "r.json")


def test_a_role_is_model_or_baseline():
    bad = results_dict()
    bad["runs"][0]["role"] = "fsnet"
    with pytest.raises(ResultsError, match=r"runs\[0\] 'role'"):
        read_results(json.dumps(bad), "r.json")
    assert Results.model_fields["runs"].description  # every field says what it is
