"""Content fingerprints as files and messages name them: ``sha256:<64 hex digits>`` in manifests, the first 12 hex
digits in file names (``part-00003-<fp12>.parquet``), index folders (``catalog_shard=<fp12>``) and messages."""

from __future__ import annotations

PREFIX = "sha256:"
SHORT = 12  # hex digits: 48 bits, no collision among a catalog's shards in practice, short enough to read


def short_fingerprint(fingerprint: str) -> str:
    """``"sha256:<hex>"`` -> its first 12 hex digits."""
    return fingerprint.removeprefix(PREFIX)[:SHORT]
