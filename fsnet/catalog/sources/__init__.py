"""Sources a catalog is packed from. Each returns a ``SourceTable``: one row per image with its id, the
URL of its file and its labels, validated before anything is written."""

from __future__ import annotations

from fsnet.catalog.sources.base import SourceTable
from fsnet.config import SourceConfig
from fsnet.errors import SourceError
from fsnet.storage import Storage


def read_source(cfg: SourceConfig, storage: Storage) -> SourceTable:
    if cfg.path is None:
        raise SourceError(
            "source.path is not set: pass --source URL (a folder with a label table, CelebA's or ADDE's files)"
        )
    if cfg.kind == "folder":
        from fsnet.catalog.sources.folder import read_folder_source

        return read_folder_source(cfg, storage)
    if cfg.kind == "adde":
        from fsnet.catalog.sources.adde import read_adde_source

        return read_adde_source(cfg, storage)
    from fsnet.catalog.sources.celeba import read_celeba_source

    return read_celeba_source(cfg, storage)


__all__ = ["SourceTable", "read_source"]
