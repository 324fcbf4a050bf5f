"""The memory stage of FashionSearchNet's plan: the fixed local features of the training split, embedded by the
actors the index job uses and written under the run's ``features/`` (stage 3 trains on them), then the memory block
M as the mean feature per attribute value, summed exactly (fsnet/model/memory.py) whatever order the rows arrive in.
A training split of at most index.in_process_max images is embedded in the driver's process by the same EmbedImages
(jobs/embed_rows.py ``embed_here``): the actor pool's start costs more than such a split. So is a split of any size
where the pool would be one actor on CPUs (a machine of two cores): the same work, without the pool's start;
index.in_process_max 0 always takes the pool."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import torch

from fsnet.columns import column_array, parquet_bytes
from fsnet.config import Config
from fsnet.embedding import EmbedImages
from fsnet.model import load_model, save_model
from fsnet.model.memory import ExactValueSums
from fsnet.storage import Storage, join
from jobs.command import console
from jobs.embed_rows import embed_here, embed_rows, embeds_here
from jobs.progress import count_bar, pipeline_bar
from jobs.training_split import TrainingSplit


def memory_stage(
    cfg: Config, split: TrainingSplit, storage: Storage, out: str, start_url: str, memory_url: str
) -> None:
    """Fixed local features of the training split (the embedding actors the index job uses), then M as the mean
    feature per value."""
    features = join(out, "features")
    fs, path = storage.arrow_fs(features)
    for name in storage.listdir(features):  # a partial earlier attempt
        storage.remove(join(features, name))
    catalog = split.catalog
    if embeds_here(cfg, len(split.fit_ids)):
        _embed_here(cfg, split, storage, start_url, features)
    else:
        with catalog.reading(), pipeline_bar("memory", len(split.fit_ids), EmbedImages.__name__):  # a bad shard: a line
            rows = split.rows(["id", "image", *catalog.schema.names], with_shard=True)
            embed_rows(cfg, storage, start_url, catalog, rows).write_parquet(path, filesystem=fs)

    model = load_model(start_url, storage)
    sums = ExactValueSums(catalog.schema.num_values, cfg.model.embed_dim)  # rows arrive in the pool's order
    for batch in pads.dataset(path, filesystem=fs, format="parquet").to_batches(
        columns=["reps", "error", *catalog.schema.names], filter=pads.field("error").is_null()
    ):
        table = pa.Table.from_batches([batch])
        reps = torch.from_numpy(column_array(table, "reps", (len(catalog.schema.names), cfg.model.embed_dim)))
        labels = torch.from_numpy(
            np.stack([table[a].to_numpy() for a in catalog.schema.names], axis=1).astype(np.int64)
        )
        sums.add(reps, labels)
    totals, counts = sums.totals()
    model.memory.set_means(totals, counts)
    save_model(model, memory_url, storage)
    images = int(counts.sum() // len(catalog.schema.names))
    console.print(f"memory: {int((counts > 0).sum())} of {len(counts)} values seen in {images:,} training images")


def _embed_here(cfg: Config, split: TrainingSplit, storage: Storage, start_url: str, features: str) -> None:
    """The training split's features embedded in this process, one Parquet file per catalog shard under
    ``features`` (the columns the pool writes)."""
    catalog = split.catalog
    with catalog.reading(), count_bar("memory", len(split.fit_ids)) as advance:  # a shard that cannot be read: a line
        shards = embed_here(
            cfg, storage, start_url, catalog, "train", catalog.manifest.shards, keep=split.fit_ids, advance=advance
        )
        for number, (_, rows) in enumerate(shards):
            storage.write_bytes(join(features, f"part-{number:05d}.parquet"), parquet_bytes(rows))
