"""The frozen pretrained trunk's features of every catalog image, computed once per (catalog shards, backbone,
weights, image size) and reused: by training with ``train.trunk: frozen`` (stages 1-2 train conv5 onwards on the
maps) and by the ``probe`` baselines (logistic regression on the pooled features). On 2 CPU cores the trunk is most
of a forward pass, so computing it once instead of once per epoch, stage, variant and re-run is what makes many
epochs affordable.

A cache entry is a folder ``<root>/<backbone>-<size>px-<trunk fingerprint>/``, one sub-folder per catalog shard:

    catalog_shard=<fp12>/*.parquet  id string; error string (null, or why the image could not be decoded: its other
                    columns are zeros); pooled fixed_size_list<float32>[P] (global average of the whole trunk's
                    output); maps fixed_size_list<float16>[C * h * w] (the maps the model reads, at stride 16,
                    channel-major: the trunk's output, or with tuned blocks the output of the blocks before them)
    trunk.json      what the entry holds: the trunk (backbone, weights, fingerprint of the blocks the maps come
                    from), size, tuned blocks, C, (h, w), P, and each complete shard with its images and rejected
                    ones; a shard is listed only once all its rows are written, so a run stopped in the middle leaves
                    nothing that looks complete

Tuned blocks (``train.tuned_blocks: N``): the trunk's last N blocks train with the new layers (at a fraction of the
rate), so the maps cached for such a run are those of the blocks before them, in their own entry
``<backbone>-<size>px-tuned<N>-<fingerprint of those blocks>``; its pooled features are still the whole pretrained
trunk's, so the probe reads either entry.

The entry is named by the trunk's own weights (a digest of its tensors) and the image size; shards by their content
fingerprint (the catalog's, not its URL or splits): a re-pack that leaves a shard's bytes unchanged, or the same
catalog copied elsewhere, finds it; a changed or new shard is computed, and only that shard. Split membership is read
from the catalog by id. The embed path (fsnet/embedding.py) reads the maps instead of decoding and running the
trunk when the model's trunk has exactly these weights (a frozen-trunk run): index, memory and held-out evaluation
then cost the new layers only.

Images are resized as the embed path resizes them (fsnet.decode.resize_batch, no augmentation) and normalised as the
model normalises them, so the maps equal what the model's own trunk computes in eval mode (to float rounding: the
pass folds the batch norms into the convolutions and runs channels-last, see ``TrunkFeatures``). A backbone without
pretrained weights (``weights: none``) is built under a fixed seed: its features are random but the same in every
process (a random-feature probe, and a frozen trunk the run's model holds too: see ``frozen_trunk``).
"""

from __future__ import annotations

import functools
import hashlib
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import torch
from pydantic import BaseModel, ConfigDict
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fsnet.columns import column_array, fixed_list
from fsnet.config import ModelConfig
from fsnet.decode import decode_or_reject, resize_batch
from fsnet.errors import FsnetError
from fsnet.model.backbone import ImageNetNormalize, build_backbone, split_trunk
from fsnet.storage import Storage, join

MANIFEST = "trunk.json"
PARTITION = "catalog_shard"  # one folder per catalog shard: catalog_shard=<12 hex digits of its fingerprint>
RANDOM_TRUNK_SEED = 0  # a trunk without pretrained weights: the same random weights in every process


class TrunkCacheError(FsnetError):
    pass


class ShardEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    images: int
    rejected: dict[str, str]  # id -> why


class TrunkManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: int = 1
    backbone: str
    weights: str
    trunk_fingerprint: str  # of the blocks the maps come from (the whole trunk unless tuned_blocks)
    image_size: int
    tuned_blocks: int = 0  # the trunk's last blocks that are not in the maps (an entry before them: 0)
    channels: int  # of the maps
    map_size: tuple[int, int]
    pooled_channels: int | None = None  # of the pooled features; None: ``channels`` (an entry before tuned blocks)
    shards: dict[str, ShardEntry]  # catalog shard fingerprint (12 hex digits) -> what it holds
    seconds: float  # of the last computation


def trunk_fingerprint(trunk: torch.nn.Module) -> str:
    """16 hex digits of the trunk's tensors (names, shapes and bytes, in order): the same weights, the same maps."""
    digest = hashlib.sha256()
    for name, tensor in trunk.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=8)
def pretrained_fingerprint(backbone: str, weights: str, tuned_blocks: int = 0) -> str:
    """trunk_fingerprint of the pretrained trunk's blocks before its last ``tuned_blocks``, built once per process
    (naming a cache entry is asked for by every job step, and building MobileNetV2 or AlexNet each time costs a
    second or more)."""
    return trunk_fingerprint(split_trunk(_pretrained(backbone, weights), tuned_blocks)[0])


def frozen_trunk(model: ModelConfig) -> torch.nn.Module:
    """The pretrained trunk alone (eval mode): the one construction the cache and a frozen-trunk model share."""
    return _pretrained(model.backbone, model.weights)


def pretrained_tuned_blocks(model: ModelConfig, tuned_blocks: int) -> torch.nn.Sequential:
    """The pretrained trunk's last ``tuned_blocks`` blocks (eval mode; the identity for 0) as they were before any
    training tuned them: the probe expert reads the cached maps through them (fsnet/model/probe_expert.py)."""
    return split_trunk(frozen_trunk(model), tuned_blocks)[1].eval()


def fold_batch_norms(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` (eval mode) with every batch norm that follows a convolution folded into it (the conv's weight
    and bias scaled and shifted, the norm replaced by an identity): the same function to float rounding, one pass
    over the activations instead of two. The pairs are a Sequential's consecutive children (torchvision's
    MobileNetV2 and downsample blocks) and a block's ``convK``/``bnK`` attributes (its ResNet blocks)."""
    for parent in module.modules():
        names = list(parent._modules)
        pairs = list(zip(names, names[1:])) if isinstance(parent, torch.nn.Sequential) else []
        pairs += [(f"conv{k}", f"bn{k}") for k in (1, 2, 3) if f"conv{k}" in names and f"bn{k}" in names]
        for conv, norm in pairs:
            c, n = parent._modules[conv], parent._modules[norm]
            if isinstance(c, torch.nn.Conv2d) and isinstance(n, torch.nn.BatchNorm2d):
                parent._modules[conv] = fuse_conv_bn_eval(c, n)
                parent._modules[norm] = torch.nn.Identity()
    return module


def _pretrained(backbone: str, weights: str) -> torch.nn.Module:
    torch.manual_seed(RANDOM_TRUNK_SEED)  # only matters for weights: none
    trunk = build_backbone(backbone, weights, 8, 8).trunk
    return trunk.eval()


class TrunkFeatures:
    """Ray Data callable class: catalog rows (``id``, ``image`` bytes) -> pooled features and maps (see above)."""

    def __init__(self, model: ModelConfig, image_size: int, threads: int | None = None, tuned_blocks: int = 0):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if threads is not None and self.device.type == "cpu":  # Ray gives an actor of one CPU one thread
            torch.set_num_threads(threads)
        # batch norms folded into the convolutions, channels-last activations: the same maps to float rounding, several
        # times the images/s of the plain trunk on a CPU (bench/trunk_bench.py measures both)
        trunk = fold_batch_norms(frozen_trunk(model)).to(self.device, memory_format=torch.channels_last)
        self.lower, self.upper = split_trunk(trunk, tuned_blocks)
        self.normalize = ImageNetNormalize().to(self.device)
        self.image_size = image_size

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        blobs = list(batch["image"])
        images, errors = decode_or_reject(blobs)  # one bad image must not take the batch down: it is listed instead
        decoded = [image for image in images if image is not None]
        good = [i for i, e in enumerate(errors) if e is None]
        maps = pooled = None
        if good:
            images = resize_batch(decoded, self.image_size).to(self.device)  # (B, 3, S, S) uint8
            with torch.inference_mode():
                x = self.normalize(images).contiguous(memory_format=torch.channels_last)
                lower = self.lower(x)  # (B, C, h, w) the maps the model reads
                out = self.upper(lower).float().mean(dim=(2, 3)).cpu()  # (B, P) the whole trunk's, pooled
                lower = lower.float().cpu().contiguous()
            pooled = np.zeros((len(blobs), out.shape[1]), np.float32)
            maps = np.zeros((len(blobs), *lower.shape[1:]), np.float16)
            pooled[good] = out.numpy()
            maps[good] = lower.half().numpy()
        else:  # a batch of rejected images only: zero columns of the right width
            c, (h, w), p = self.shapes()
            pooled, maps = np.zeros((len(blobs), p), np.float32), np.zeros((len(blobs), c, h, w), np.float16)
        return pa.table(
            {
                "id": pa.array(batch["id"].tolist(), pa.string()),
                "error": pa.array(errors, pa.string()),
                "pooled": fixed_list(pooled, pa.float32()),
                "maps": fixed_list(maps, pa.float16()),
                "catalog_shard": pa.array(batch["catalog_shard"].tolist(), pa.string()),  # the partition
            }
        )

    def shapes(self) -> tuple[int, tuple[int, int], int]:
        return _shapes(self.lower, self.upper, self.image_size, self.device)


def trunk_shapes(model: ModelConfig, image_size: int, tuned_blocks: int) -> tuple[int, tuple[int, int], int]:
    """(C, (h, w), P): the cached maps' channels and size and the pooled features' width (square inputs)."""
    lower, upper = split_trunk(frozen_trunk(model), tuned_blocks)
    return _shapes(lower, upper, image_size, torch.device("cpu"))


def _shapes(
    lower: torch.nn.Module, upper: torch.nn.Module, image_size: int, device: torch.device
) -> tuple[int, tuple[int, int], int]:
    with torch.inference_mode():
        x = torch.zeros(1, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
        maps = lower(x)  # (1, C, h, w)
        out = upper(maps)  # (1, P, h, w)
    return maps.shape[1], (maps.shape[2], maps.shape[3]), out.shape[1]


class TrunkCache:
    """One cache entry, read with plain pyarrow (no Ray): only the shards its manifest lists."""

    def __init__(self, url: str, storage: Storage, manifest: TrunkManifest):
        self.url, self.storage, self.manifest = url, storage, manifest

    @classmethod
    def open(cls, url: str, storage: Storage) -> "TrunkCache":
        file = join(url, MANIFEST)
        if not storage.exists(file):
            raise TrunkCacheError(f"{file} not found: no trunk feature cache there")
        return cls(url, storage, TrunkManifest.model_validate_json(storage.read_bytes(file)))

    @property
    def channels(self) -> int:
        return self.manifest.channels

    @property
    def pooled_channels(self) -> int:
        return self.manifest.pooled_channels or self.manifest.channels

    def _dataset(self, shards: Sequence[str]) -> pads.Dataset:
        fs, path = self.storage.arrow_fs(self.url)
        parts = [pads.dataset(f"{path}/{PARTITION}={s}", filesystem=fs, format="parquet") for s in shards]
        return pads.dataset(parts)  # the union of the shards' folders

    def read(self, ids: Sequence[str], maps: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(found, arrays) for ``ids``: ``found`` (len(ids),) bool (False: rejected or absent), arrays in the order
        of ``ids`` restricted to the found ones: ``pooled`` (n, P) float32 and, with ``maps``, ``maps``
        (n, C, h, w) float16."""
        table = self._dataset(list(self.manifest.shards)).to_table(
            columns=["id", "pooled", *(["maps"] if maps else [])],
            filter=pads.field("id").isin(pa.array(list(ids), pa.string())) & pads.field("error").is_null(),
        )
        where = {i: n for n, i in enumerate(table["id"].to_pylist())}
        found = np.array([i in where for i in ids], bool)
        order = np.array([where[i] for i in ids if i in where], np.int64)
        out = {"pooled": column_array(table, "pooled", (self.pooled_channels,))[order]}
        if maps:
            out["maps"] = self._maps(table)[order]
        return found, out

    def shard(self, shard: str) -> tuple[dict[str, int], np.ndarray]:
        """One catalog shard's (id -> row, maps (n, C, h, w) float16) of its decodable images."""
        table = self._dataset([shard]).to_table(columns=["id", "maps"], filter=pads.field("error").is_null())
        return {i: n for n, i in enumerate(table["id"].to_pylist())}, self._maps(table)

    def _maps(self, table: pa.Table) -> np.ndarray:
        column = table["maps"].combine_chunks()
        h, w = self.manifest.map_size
        return column.values.to_numpy(zero_copy_only=False).reshape(len(column), self.channels, h, w)


def shard_entries(storage: Storage, url: str, shards: Sequence[str]) -> dict[str, ShardEntry]:
    """What the newly written ``shards`` hold: images and the rejected ones, read back from the files."""
    fs, path = storage.arrow_fs(url)
    entries = {}
    for shard in shards:
        table = pads.dataset(f"{path}/{PARTITION}={shard}", filesystem=fs, format="parquet").to_table(
            columns=["id", "error"]
        )
        bad = table.filter(pads.field("error").is_valid())
        entries[shard] = ShardEntry(
            images=table.num_rows, rejected=dict(zip(bad["id"].to_pylist(), bad["error"].to_pylist()))
        )
    return entries
