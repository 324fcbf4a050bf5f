"""The frozen pretrained trunk's features of every catalog image, computed once per (catalog shards, backbone,
weights, image size) and reused: by training with ``train.trunk: frozen`` (stages 1-2 train conv5 onwards on the
maps) and by the ``probe`` baselines (logistic regression on the pooled features). On 2 CPU cores the trunk is most
of a forward pass, so computing it once instead of once per epoch, stage, variant and re-run is what makes many
epochs affordable.

A cache entry is a folder ``<root>/<key>/``:

    part-*.parquet  id string; error string (null, or why the image could not be decoded: its other columns are
                    zeros); pooled fixed_size_list<float32>[C] (global average of the maps); maps
                    fixed_size_list<float16>[C * h * w] (the trunk's output at stride 16, channel-major)
    trunk.json      written last, so an entry without it is incomplete and is computed again: the key's parts, C,
                    (h, w), the catalog it was computed from, images and the rejected ones

The key is a digest of the backbone, its weights, the image size and the catalog's shard fingerprints (not its URL
or splits): a re-pack that leaves the shards' bytes unchanged, or the same catalog copied elsewhere, finds the same
entry; a change to any shard computes a new one. Split membership is read from the catalog by id.

Images are resized as the embed path resizes them (fsnet.decode.resize_batch, no augmentation) and normalised as the
model normalises them, so the maps equal what the model's own trunk computes in eval mode. A backbone without
pretrained weights (``weights: none``) is built under a fixed seed: its features are random but the same in every
process (a random-feature probe, and a frozen trunk the run's model holds too: see ``frozen_trunk``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import torch
from pydantic import BaseModel, ConfigDict

from fsnet.catalog.reader import Catalog
from fsnet.config import ModelConfig
from fsnet.decode import decode_images, resize_batch
from fsnet.embedding import column_array, fixed_list
from fsnet.errors import FsnetError
from fsnet.model.backbone import ImageNetNormalize, build_backbone
from fsnet.storage import Storage, join

MANIFEST = "trunk.json"
RANDOM_TRUNK_SEED = 0  # a trunk without pretrained weights: the same random weights in every process


class TrunkCacheError(FsnetError):
    pass


class TrunkManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: int = 1
    key: str
    backbone: str
    weights: str
    image_size: int
    channels: int
    map_size: tuple[int, int]
    catalog: str  # where it was computed from (informative: the key does not depend on it)
    shards: list[str]  # the catalog's shard fingerprints
    images: int
    rejected: dict[str, str]  # id -> why
    seconds: float


def trunk_key(model: ModelConfig, catalog: Catalog, image_size: int) -> str:
    """16 hex digits naming a cache entry (module docstring)."""
    parts = {
        "backbone": model.backbone,
        "weights": model.weights,
        "image_size": image_size,
        "shards": sorted(s.fingerprint for s in catalog.manifest.shards),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def frozen_trunk(model: ModelConfig) -> torch.nn.Module:
    """The pretrained trunk alone (eval mode): the one construction the cache and a frozen-trunk model share."""
    torch.manual_seed(RANDOM_TRUNK_SEED)  # only matters for weights: none
    trunk = build_backbone(model.backbone, model.weights, 8, 8).trunk
    return trunk.eval()


class TrunkFeatures:
    """Ray Data callable class: catalog rows (``id``, ``image`` bytes) -> pooled features and maps (see above)."""

    def __init__(self, model: ModelConfig, image_size: int):
        self.trunk = frozen_trunk(model)
        self.normalize = ImageNetNormalize()
        self.image_size = image_size

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        blobs = list(batch["image"])
        errors: list[str | None] = [None] * len(blobs)
        decoded = []
        for i, blob in enumerate(blobs):  # one bad image must not take the batch down: it is listed instead
            try:
                decoded.append(decode_images([blob])[0])
            except Exception as err:  # noqa: BLE001 - every decoder failure is a rejected image
                errors[i] = f"undecodable: {type(err).__name__}: {str(err)[:200]}"
        good = [i for i, e in enumerate(errors) if e is None]
        maps = pooled = None
        if good:
            images = resize_batch(decoded, self.image_size)  # (B, 3, S, S) uint8
            with torch.inference_mode():
                out = self.trunk(self.normalize(images))  # (B, C, h, w)
            pooled = np.zeros((len(blobs), out.shape[1]), np.float32)
            maps = np.zeros((len(blobs), *out.shape[1:]), np.float16)
            pooled[good] = out.mean(dim=(2, 3)).numpy()
            maps[good] = out.half().numpy()
        else:  # a batch of rejected images only: zero columns of the right width
            c, (h, w) = self._shape()
            pooled, maps = np.zeros((len(blobs), c), np.float32), np.zeros((len(blobs), c, h, w), np.float16)
        return pa.table(
            {
                "id": pa.array(batch["id"].tolist(), pa.string()),
                "error": pa.array(errors, pa.string()),
                "pooled": fixed_list(pooled, pa.float32()),
                "maps": fixed_list(maps, pa.float16()),
            }
        )

    def _shape(self) -> tuple[int, tuple[int, int]]:
        with torch.inference_mode():
            out = self.trunk(torch.zeros(1, 3, self.image_size, self.image_size))
        return out.shape[1], (out.shape[2], out.shape[3])


class TrunkCache:
    """One complete cache entry, read with plain pyarrow (no Ray)."""

    def __init__(self, url: str, storage: Storage, manifest: TrunkManifest):
        self.url, self.storage, self.manifest = url, storage, manifest

    @classmethod
    def open(cls, url: str, storage: Storage) -> "TrunkCache":
        file = join(url, MANIFEST)
        if not storage.exists(file):
            raise TrunkCacheError(f"{file} not found: no complete trunk feature cache there")
        return cls(url, storage, TrunkManifest.model_validate_json(storage.read_bytes(file)))

    @property
    def channels(self) -> int:
        return self.manifest.channels

    def read(self, ids: Sequence[str], maps: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(found, arrays) for ``ids``: ``found`` (len(ids),) bool (False: rejected or absent), arrays in the order
        of ``ids`` restricted to the found ones: ``pooled`` (n, C) float32 and, with ``maps``, ``maps``
        (n, C, h, w) float16."""
        fs, path = self.storage.arrow_fs(self.url)
        columns = ["id", "pooled", *(["maps"] if maps else [])]
        table = pads.dataset(path, filesystem=fs, format="parquet", exclude_invalid_files=True).to_table(
            columns=columns,
            filter=pads.field("id").isin(pa.array(list(ids), pa.string())) & pads.field("error").is_null(),
        )
        where = {i: n for n, i in enumerate(table["id"].to_pylist())}
        found = np.array([i in where for i in ids], bool)
        order = np.array([where[i] for i in ids if i in where], np.int64)
        c, (h, w) = self.manifest.channels, self.manifest.map_size
        out = {"pooled": column_array(table, "pooled", (c,))[order]}
        if maps:
            column = table["maps"].combine_chunks()
            flat = column.values.to_numpy(zero_copy_only=False).reshape(len(column), c, h, w)
            out["maps"] = flat[order]
        return found, out


def write_manifest(
    storage: Storage,
    url: str,
    key: str,
    model: ModelConfig,
    image_size: int,
    catalog: Catalog,
    rejected: dict[str, str],
    seconds: float,
) -> TrunkManifest:
    """Read the entry's parts back for its shape and count, then write trunk.json (the entry is complete)."""
    fs, path = storage.arrow_fs(url)
    dataset = pads.dataset(path, filesystem=fs, format="parquet", exclude_invalid_files=True)
    images = dataset.count_rows()
    first = next(dataset.to_batches(columns=["pooled", "maps"], batch_size=1), None)
    channels = first.column(0).type.list_size if first is not None else 0
    side = round((first.column(1).type.list_size // max(channels, 1)) ** 0.5) if first is not None else 0  # square
    manifest = TrunkManifest(
        key=key,
        backbone=model.backbone,
        weights=model.weights,
        image_size=image_size,
        channels=channels,
        map_size=(side, side),
        catalog=catalog.url,
        shards=[s.fingerprint for s in catalog.manifest.shards],
        images=images,
        rejected=rejected,
        seconds=round(seconds, 1),
    )
    storage.write_text(join(url, MANIFEST), manifest.model_dump_json(indent=1))
    return manifest
