"""bench/scale_bench.py at tiny sizes on the session's Ray: two synthetic catalogs packed, indexed and evaluated by
the jobs themselves, every step of every size timed with its memory and bytes, the growth fitted, and faiss IVF-PQ
measured against exact flat search on the larger catalog."""

from __future__ import annotations

import json
import math

import pytest

from bench.scale_bench import STEPS, main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]


def test_scale_bench_measures_every_step_of_every_size(tmp_path, capsys):
    out = tmp_path / "scale.json"
    argv = "--sizes 400,200 --queries 20 --size 32 --query-chunk 16 --untrained --no-warmup".split()
    returned = main([*argv, "--work", str(tmp_path / "w"), "--out", str(out)])
    r = json.loads(out.read_text())
    assert r == json.loads(json.dumps(returned))

    assert [s["n"] for s in r["sizes"]] == [200, 400]
    for s in r["sizes"]:
        assert s["queries"] == 20 and s["gallery"] == round(0.4 * s["n"])  # every synthetic image is eligible
        assert s["indexed"] == s["n"] and s["manipulations"] > 0
        for step in STEPS:
            f = s["steps"][step]
            for key in ("seconds", "images_per_s", "driver_peak_mib", "worker_peak_mib", "workers_sum_peak_mib"):
                assert f[key] > 0, (s["n"], step, key, f[key])
            assert f["workers"] >= 1
        assert all(v > 0 for v in s["bytes"].values()), s["bytes"]
        assert s["bytes"]["index"] >= s["bytes"]["embeddings"] + s["bytes"]["faiss"]
        e = s["steps"]["evaluate"]
        assert e["chunk_block_mib"] == pytest.approx(16 * s["gallery"] * 4 / 2**20)
        assert e["all_at_once_mib"] == pytest.approx(s["manipulations"] * s["gallery"] * 4 / 2**20)
    small, large = r["sizes"]
    assert large["gallery"] > small["gallery"] and large["bytes"]["catalog"] > small["bytes"]["catalog"]
    c = r["smaller_chunk"]
    assert c["query_chunk"] == 4 and c["seconds"] > 0 and c["topk_s"] > 0 and c["driver_peak_mib"] > 0
    assert math.isfinite(c["bytes_per_pair"])  # (16 - 4) x 160 pairs: a figure, whatever its sign at this size
    for step in (*STEPS, "evaluate_memory"):
        assert math.isfinite(r["fit"][step]["k"]) and math.isfinite(r["fit"][step]["per_image"])

    a = r["ann"]
    assert a["gallery"] == large["gallery"] and a["queries"] == 20 and a["k"] == 50
    assert a["flat"]["recall@10"] == 1.0 and a["flat"]["recall@50"] == 1.0
    assert a["flat"]["bytes"] >= a["gallery"] * a["dim"] * 4
    assert a["ivfpq"] and all(a["dim"] % p["m"] == 0 for p in a["ivfpq"])
    for p in a["ivfpq"]:
        assert p["build_s"] > 0 and 0 < p["bytes"] and p["nbits"] == 7  # 160 gallery vectors: 2^7 PQ centroids
        assert [run["nprobe"] for run in p["runs"]] == sorted(run["nprobe"] for run in p["runs"])
        for run in p["runs"]:
            assert run["search_s"] > 0
            assert 0 <= run["recall@10"] <= 1 and 0 <= run["recall@50"] <= 1
    best = max(run["recall@10"] for p in a["ivfpq"] for run in p["runs"])
    assert best > 0.2, a["ivfpq"]  # a search that found nothing would be a broken index, not a coarse one

    printed = capsys.readouterr().out
    assert "growth t ~ N^k" in printed and "flat (exact)" in printed and "figures written to" in printed
