"""Sources a catalog is packed from. Each returns a ``SourceTable``: one row per image with its id, the
URL of its file and its labels, validated before anything is written."""

from __future__ import annotations

from typing import Callable

from fsnet.catalog.sources.adde import read_adde_source
from fsnet.catalog.sources.base import SourceTable
from fsnet.catalog.sources.celeba import read_celeba_source
from fsnet.catalog.sources.folder import read_folder_source
from fsnet.config import SourceConfig
from fsnet.errors import SourceError
from fsnet.storage import Storage

# source.kind -> its reader: a new kind of source is a file and a line here (and the kind in config.SourceConfig)
READERS: dict[str, Callable[[SourceConfig, Storage], SourceTable]] = {
    "folder": read_folder_source,
    "celeba": read_celeba_source,
    "adde": read_adde_source,
}


def read_source(cfg: SourceConfig, storage: Storage) -> SourceTable:
    if cfg.path is None:
        raise SourceError(
            "source.path is not set: pass --source URL (a folder with a label table, CelebA's or ADDE's files)"
        )
    return READERS[cfg.kind](cfg, storage)


__all__ = ["READERS", "SourceTable", "read_source"]
