"""Embed catalog images: the Ray Data callable class that the training job (memory block, stage-3 features) and
the index job share. ``__init__`` loads the model once; ``__call__`` takes a batch of catalog rows (encoded
``image`` bytes, ``id``, labels) and returns a pyarrow table of fixed-size list columns that plain pyarrow reads:

    id             string
    error          string: null, or why the image could not be decoded (its other columns are then zeros)
    reps           fixed_size_list<float32>[A * D]   attribute representations fc10_a, attribute-major
    predicted      fixed_size_list<int16>[A]        value of highest probability per attribute
    probabilities  fixed_size_list<float32>[C]      softmax per attribute, concatenated in schema order
    boxes          fixed_size_list<float32>[A * 4]  (x0, y0, x1, y1) per attribute, as fractions of the image
    global         fixed_size_list<float32>[r]      the global representation F, unmanipulated
    t_decode, t_model  float32: this row's share of the batch's decode and model seconds (where time goes)
    + the pass-through columns (labels, shard fingerprint, ...) unchanged

On every device the model runs channels-last (oneDNN's and cuDNN's NHWC kernels) and decoded images go through the
trunk's blocks with their batch norms folded, as the trunk cache runs them: on a CPU 2.1x the images/s of the plain
model (bench/layout_bench.py). On a GPU: JPEG decode with nvJPEG inside the actor (``gpu_decode``; the batch in one
call, one resize per input size) and fp16 autocast.
"""

from __future__ import annotations

import copy
import time
from typing import Sequence

import numpy as np
import pyarrow as pa
import torch

from fsnet.columns import fixed_list
from fsnet.decode import decode_or_reject, resize_batch
from fsnet.model import load_model
from fsnet.storage import Storage
from fsnet.trunk_features import TrunkCache, fold_batch_norms, trunk_fingerprint

# trunk-cache bytes an actor keeps in memory: Ray Data's blocks interleave many shards, and a shard dropped too early is
# read again for every block that needs it (most of an index's time, with a few shards held); a catalog of tens of
# thousands of 96 px photos fits (docs/experiments.md)
CACHE_BYTES_HELD = 1.5e9


class EmbedImages:
    def __init__(
        self,
        model_url: str,
        storage: Storage,
        image_size: int,
        passthrough: Sequence[str] = (),
        device: str = "auto",
        gpu_decode: bool = True,
        trunk_cache: str | None = None,
        threads: int | None = None,
    ):
        self.device = torch.device(
            "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
        )
        if threads is not None and self.device.type == "cpu":  # Ray gives an actor of one CPU one torch thread
            torch.set_num_threads(threads)
        self.model = load_model(model_url, storage).to(self.device)
        self.cuda = self.device.type == "cuda"
        self.model = self.model.to(memory_format=torch.channels_last)
        # the trunk's blocks before the tuned ones as the trunk cache runs them: batch norms folded into the
        # convolutions, the same maps to float rounding in one pass over the activations fewer (bench/trunk_bench.py)
        self.trunk_pass = fold_batch_norms(copy.deepcopy(self.model.backbone.cached()).eval())
        self.decode_device = self.device if self.cuda and gpu_decode else torch.device("cpu")
        self.image_size = image_size
        self.passthrough = list(passthrough)
        self.trunk = None  # the cache entry whose maps stand in for this model's trunk, when they are its maps
        if trunk_cache is not None:
            cache, backbone = TrunkCache.open(trunk_cache, storage), self.model.backbone
            same = cache.manifest.trunk_fingerprint == trunk_fingerprint(backbone.cached())  # the maps it would compute
            same = same and cache.manifest.tuned_blocks == backbone.tuned_blocks
            self.trunk = cache if same and cache.manifest.image_size == image_size else None
        self.shards: dict[str, tuple[dict[str, int], np.ndarray]] = {}  # cache shards read, oldest first

    def _cached(self, batch: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
        """Row -> its trunk maps (C, h, w) for the rows of ``batch`` the cache holds (needs ``catalog_shard``)."""
        if self.trunk is None or "catalog_shard" not in batch:
            return {}
        found = {}
        for row, (image_id, shard) in enumerate(zip(batch["id"], batch["catalog_shard"])):
            if shard not in self.trunk.manifest.shards:
                continue
            if shard not in self.shards:  # held until the bytes held pass the budget, then the oldest dropped
                self.shards[shard] = self.trunk.shard(shard)
                while len(self.shards) > 1 and sum(m.nbytes for _, m in self.shards.values()) > CACHE_BYTES_HELD:
                    self.shards.pop(next(iter(self.shards)))
            index, maps = self.shards[shard]
            where = index.get(str(image_id))
            if where is not None:
                found[row] = maps[where]
        return found

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        start = time.perf_counter()
        blobs = list(batch["image"])
        errors: list[str | None] = [None] * len(blobs)
        cached = self._cached(batch)
        todo = [i for i in range(len(blobs)) if i not in cached]
        # one bad image must not take the batch down: it is listed instead; nvJPEG decodes the batch in one call
        images, why = decode_or_reject(
            [blobs[i] for i in todo], self.decode_device, batched=self.decode_device.type == "cuda"
        )
        for i, reason in zip(todo, why):
            errors[i] = reason
        decoded = [image for image in images if image is not None]
        good = [i for i, reason in zip(todo, why) if reason is None]
        t_decode = time.perf_counter() - start

        start = time.perf_counter()
        n, a, d = len(blobs), len(self.model.schema.names), self.model.cfg.embed_dim
        reps = np.zeros((n, a, d), np.float32)
        predicted = np.zeros((n, a), np.int16)
        probabilities = np.zeros((n, sum(self.model.schema.num_values)), np.float32)
        boxes = np.zeros((n, a, 4), np.float32)
        global_ = np.zeros((n, self.model.global_dim), np.float32)
        inputs = []  # (rows, their trunk maps (B, C, h, w))
        if good:
            images = resize_batch(decoded, self.image_size).to(self.device)  # (B, 3, S, S) uint8
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda):
                maps = self.trunk_pass(self.model.normalize(images))  # (B, C, S/16, S/16)
            inputs.append((good, maps))
        if cached:
            rows = sorted(cached)
            maps = torch.from_numpy(np.stack([cached[r] for r in rows])).to(self.device).float()  # (B, C, h, w)
            maps = maps.contiguous(memory_format=torch.channels_last)
            inputs.append((rows, maps))
        for good, x in inputs:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda):
                emb = self.model.embed(x, from_trunk=True)
                f = self.model.global_representation(emb.reps)
            h, w = emb.map_size
            scale = torch.tensor([w, h, w, h], device=emb.boxes.device, dtype=torch.float32)
            reps[good] = emb.reps.float().cpu().numpy()
            predicted[good] = emb.predicted.cpu().numpy()
            probabilities[good] = emb.probabilities.float().cpu().numpy()
            boxes[good] = (emb.boxes.float() / scale).cpu().numpy()  # fractions of the image
            global_[good] = f.float().cpu().numpy()
        t_model = time.perf_counter() - start
        columns = {
            "id": pa.array(batch["id"].tolist(), pa.string()),
            "error": pa.array(errors, pa.string()),
            "reps": fixed_list(reps, pa.float32()),
            "predicted": fixed_list(predicted, pa.int16()),
            "probabilities": fixed_list(probabilities, pa.float32()),
            "boxes": fixed_list(boxes, pa.float32()),
            "global": fixed_list(global_, pa.float32()),
            "t_decode": pa.array(np.full(n, t_decode / max(n, 1), np.float32)),
            "t_model": pa.array(np.full(n, t_model / max(n, 1), np.float32)),
        }
        for name in self.passthrough:
            columns[name] = pa.array(batch[name])
        return pa.table(columns)
