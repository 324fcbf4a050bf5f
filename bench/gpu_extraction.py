"""The GPU check's extraction part: ``fsnet index`` (jobs.index: Ray Data read -> EmbedImages actors -> write_parquet
-> faiss) of the gallery split and of every image, per --actors-per-gpu setting, after one warm-up run. End to end is
images / extract seconds of a run; the marginal rate between the two runs is the steady state (the fixed start-up,
actor spawn, model load and CUDA init, cancels out). Against the same model's forward alone (fp16 autocast,
channels_last, the same batch, images already on the device); and the decode alone (EmbedImages' nvJPEG batch +
resize; libjpeg-turbo on one CPU thread)."""

from __future__ import annotations

import shutil
import time
from typing import Any

import torch

from fsnet.catalog.reader import Catalog
from fsnet.decode import decode_batch, decode_or_reject, resize_batch
from fsnet.model import load_model
from fsnet.storage import join
from jobs.index import index

try:  # run as a script: bench/ is on sys.path (the GPU machine runs it so)
    from gpu_harness import Check, guarded, rate, say, sync
except ImportError:  # imported as bench.gpu_extraction
    from bench.gpu_harness import Check, guarded, rate, say, sync

GOAL_EXTRACTION = 12_000  # images/s end to end per H100/H200, the goal set for the paper's AlexNet at 224 px
GOAL_EXTRACTION_RATIO = 0.8  # of the model alone


def index_run(check: Check, actors: int | None, split: str, tag: str) -> dict[str, Any]:
    """One ``fsnet index`` of ``split`` into a fresh folder (removed after): its images/s and where time went."""
    out = join(check.work, f"index-{tag}")
    sets = [f"index.actors={actors}"] if actors else []
    start = time.perf_counter()
    manifest = index(check.config(sets), check.model_url, check.catalog_url, out, split=split).manifest
    job_s = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    t = manifest.timings
    busy = t.get("decode_busy", 0.0) + t.get("model_busy", 0.0)
    pool = actors or (check.gpus or max(1, check.cpus - 1))
    run = {
        "tag": tag,
        "split": split,
        "actors": pool,
        "images": manifest.indexed,
        "rejected": len(manifest.rejected),
        "extract_s": round(t["extract"], 3),
        "job_s": round(job_s, 3),
        "images_per_s": rate(manifest.indexed, t["extract"]),
        "decode_busy_s": round(t.get("decode_busy", 0.0), 3),
        "model_busy_s": round(t.get("model_busy", 0.0), 3),
        # what the actors would do if never waiting on Ray Data: images over their busy seconds, times the pool
        "actor_busy_images_per_s": rate(manifest.indexed * pool, busy),
    }
    say(
        f"extraction: {tag}: {run['images']:,} images in {run['extract_s']:.1f} s = {run['images_per_s']} images/s "
        f"(decode busy {run['decode_busy_s']:.1f} s, model busy {run['model_busy_s']:.1f} s)"
    )
    return run


def sample_images(check: Check, count: int) -> tuple[list[bytes], torch.Tensor]:
    """``count`` encoded gallery images and the same decoded and resized on the CPU (B, 3, S, S) uint8."""
    catalog = Catalog.open(check.catalog_url, check.storage)
    blobs = list(next(catalog.batches("gallery", ["image"], batch_size=count))["image"])
    while len(blobs) < count:  # a tiny catalog: repeat
        blobs += blobs[: count - len(blobs)]
    return blobs, decode_batch(blobs, check.args.size)


def model_only(check: Check, images: torch.Tensor) -> dict[str, Any]:
    """The model alone as EmbedImages runs it (embed + global representation; fp16 autocast and channels_last on a
    GPU), on batches of index.batch_size already on the device, for about --model-seconds."""
    device, cuda, batch = check.device, check.gpus > 0, check.args.batch
    model = load_model(check.model_url, check.storage).to(device)
    x = images.to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    batches = [b for b in x.split(batch) if len(b) == batch] or [x]

    def forward(b: torch.Tensor) -> None:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=cuda):
            model.global_representation(model.embed(b).reps)

    for b in batches[:3]:  # warm-up: kernels chosen, memory pooled
        forward(b)
    sync(device)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < check.args.model_seconds or done == 0:
        for b in batches:
            forward(b)
            done += len(b)
        sync(device)
    seconds = time.perf_counter() - start
    return {"images_per_s": rate(done, seconds), "images": done, "seconds": round(seconds, 3), "batch": batch}


def decode_only(check: Check, blobs: list[bytes]) -> dict[str, Any]:
    """EmbedImages' decode and resize alone: on the GPU (nvJPEG, the batch in one call) where there is one, and on
    one CPU thread (libjpeg-turbo, image by image, as a CPU actor does)."""
    size, out = check.args.size, {}
    batches = [blobs[i : i + check.args.batch] for i in range(0, len(blobs), check.args.batch)]

    def timed(device: torch.device, batched: bool) -> float | None:
        def decode(blobs: list[bytes]) -> torch.Tensor:  # (B, 3, S, S) uint8 on ``device``
            return resize_batch([i for i in decode_or_reject(blobs, device, batched)[0] if i is not None], size)

        decode(batches[0])  # warm-up: nvJPEG's handles and buffers
        sync(device)
        start = time.perf_counter()
        for b in batches:
            decode(b)
        sync(device)
        return rate(sum(map(len, batches)), time.perf_counter() - start)

    if check.gpus:
        out["gpu_batched_images_per_s"] = timed(check.device, True)
        # nvJPEG against libjpeg-turbo on the same images: IDCT rounding differs by a few levels at most
        on_gpu = decode_or_reject(batches[0], check.device, batched=True)[0]
        on_cpu = decode_or_reject(batches[0])[0]
        diff = [(g.cpu().int() - c.int()).abs() for g, c in zip(on_gpu, on_cpu) if g is not None and c is not None]
        if diff:
            out["gpu_vs_cpu_max_abs_diff"] = max(int(d.max()) for d in diff)
            out["gpu_vs_cpu_mean_abs_diff"] = round(float(torch.stack([d.float().mean() for d in diff]).mean()), 4)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out["cpu_one_thread_images_per_s"] = timed(torch.device("cpu"), False)
    finally:
        torch.set_num_threads(threads)
    out["images"] = sum(map(len, batches))
    return out


def run(check: Check) -> dict[str, Any]:
    a = check.args
    settings = [n * check.gpus for n in a.actors_per_gpu] if check.gpus else [None]
    # first-use costs (worker imports, the first actor spawn) land in the warm-up runs, not in the measured ones
    runs = [index_run(check, settings[0], "gallery", f"warmup-{i}") for i in range(a.warmup_runs)]
    per_setting = []
    for actors in settings:
        if per_setting and check.over_budget():
            per_setting.append({"actors": actors, "skipped": f"over --budget-s {a.budget_s:g}"})
            continue
        try:  # a setting that fails (two actors sharing a GPU, say) leaves the others' figures
            gallery = index_run(check, actors, "gallery", f"gallery-{actors or 'auto'}")
            every = index_run(check, actors, "all", f"all-{actors or 'auto'}")
        except Exception as err:  # noqa: BLE001 - recorded in the setting's entry
            say(f"extraction: {actors} actor(s) FAILED: {type(err).__name__}: {str(err)[:300]}")
            per_setting.append({"actors": actors, "error": f"{type(err).__name__}: {str(err)[:1500]}"})
            continue
        runs += [gallery, every]
        extra, extra_s = every["images"] - gallery["images"], every["extract_s"] - gallery["extract_s"]
        # None where the larger run was not slower (tiny sizes: start-up noise is larger than the work)
        marginal = rate(extra, extra_s) if extra > 0 and extra_s > 0 else None
        per_setting.append(
            {
                "actors": every["actors"],
                "end_to_end_images_per_s": every["images_per_s"],
                "marginal_images_per_s": marginal,
                # what a run costs whatever its size (actor spawn, model load, CUDA init, the last write)
                "fixed_s": round(every["extract_s"] - every["images"] / marginal, 2) if marginal else None,
                "actor_busy_images_per_s": every["actor_busy_images_per_s"],
            }
        )
    blobs, images = sample_images(check, max(4 * a.batch, 1024 if check.gpus else 2 * a.batch))
    alone = model_only(check, images)
    say(f"extraction: model alone {alone['images_per_s']} images/s (batch {alone['batch']})")
    decode = guarded("extraction: decode alone", lambda: decode_only(check, blobs))
    say(f"extraction: decode alone {decode}")
    if check.gpus:
        torch.cuda.empty_cache()  # the driver's cached blocks back to the GPU before Ray Train's worker starts
    measured = [s for s in per_setting if "skipped" not in s and "error" not in s]
    if not measured:
        raise RuntimeError(f"no actor setting could be measured: {per_setting}")
    best = max(measured, key=lambda s: s["marginal_images_per_s"] or s["end_to_end_images_per_s"] or 0)
    steady = best["marginal_images_per_s"] or best["end_to_end_images_per_s"]
    model_rate = alone["images_per_s"]
    return {
        "device": str(check.device),
        "gpu_decode": bool(check.gpus) and check.config().index.gpu_decode,
        "batch": a.batch,
        "runs": runs,
        "settings": per_setting,
        "model_only": alone,
        "decode_only": decode,
        "best_actors": best["actors"],
        "end_to_end_images_per_s": best["end_to_end_images_per_s"],
        "steady_images_per_s": steady,
        "steady_from": "marginal" if best["marginal_images_per_s"] else "end_to_end",
        "model_only_images_per_s": model_rate,
        "ratio_end_to_end_to_model_only": round(best["end_to_end_images_per_s"] / model_rate, 3),
        "ratio_steady_to_model_only": round(steady / model_rate, 3),
    }


def goals(e: dict[str, Any]) -> dict[str, Any]:
    """The part's goals, judged on the steady rate: a real catalog amortises the run's fixed start-up."""
    return {
        "extraction_images_per_s": {
            "goal": GOAL_EXTRACTION,
            "steady": e["steady_images_per_s"],
            "end_to_end": e["end_to_end_images_per_s"],
            "met": e["steady_images_per_s"] >= GOAL_EXTRACTION,
        },
        "extraction_ratio_to_model_only": {
            "goal": GOAL_EXTRACTION_RATIO,
            "steady": e["ratio_steady_to_model_only"],
            "end_to_end": e["ratio_end_to_end_to_model_only"],
            "met": e["ratio_steady_to_model_only"] >= GOAL_EXTRACTION_RATIO,
        },
    }


def rows(e: dict[str, Any]) -> list[tuple[str, str]]:
    """(measurement, figure) lines of the part's entry for the table."""
    out = []
    for s in e["settings"]:
        figures = s.get("error") or s.get("skipped")
        if figures is None:
            figures = f"{s['end_to_end_images_per_s']} / {s['marginal_images_per_s']} images/s"
        out.append((f"fsnet index, {s['actors']} actor(s): end to end / steady", str(figures)[:100]))
    ratios = f"{e['ratio_end_to_end_to_model_only']} / {e['ratio_steady_to_model_only']}"
    return out + [
        ("model alone (same batch)", f"{e['model_only_images_per_s']} images/s"),
        ("ratio to the model alone: end to end / steady", ratios),
        ("decode alone", ", ".join(f"{k} {v}" for k, v in e["decode_only"].items())),
    ]
