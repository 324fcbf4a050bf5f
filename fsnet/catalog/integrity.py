"""Whether a packed catalog's files are still the ones it was packed with, and what a failed read means.

``verify_files`` re-hashes every file catalog.json names (shards, split file, stored query list) against its
fingerprint. ``explained_reads`` wraps where shards are read (in the driver, in Ray tasks or in Ray Train workers): a
read that fails (pyarrow's ArrowInvalid / OSError, as raised or wrapped by Ray) and that a changed or missing file
explains becomes one CatalogError naming that file. The files are re-hashed only then; an error they do not explain
(they all match catalog.json: a network error, say) and an FsnetError anywhere in the chain pass unchanged."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from fsnet.catalog.manifest import CatalogManifest
from fsnet.errors import CatalogError, FsnetError, exception_chain
from fsnet.fingerprint import short_fingerprint
from fsnet.storage import Storage, join

# What to do about verify_files' problems: a re-pack from the source to the same URL writes again every shard that is
# missing or whose bytes no longer match its name.
REPAIR_HINT = "re-pack the catalog from its source to the same URL"


def verify_files(url: str, storage: Storage, manifest: CatalogManifest) -> list[str]:
    """One line per file of the catalog at ``url`` that is missing or whose bytes no longer match its fingerprint in
    catalog.json; empty when all is well. Reads every byte."""
    files = [(s.path, s.fingerprint) for s in manifest.shards] + [(manifest.splits.path, manifest.splits.fingerprint)]
    if manifest.protocol is not None:
        files.append((manifest.protocol.path, manifest.protocol.fingerprint))
    problems = []
    for path, fingerprint in files:
        file_url = join(url, path)
        if not storage.exists(file_url):
            problems.append(f"{file_url}: missing")
            continue
        digest = "sha256:" + hashlib.sha256(storage.read_bytes(file_url)).hexdigest()
        if digest != fingerprint:
            problems.append(
                f"{file_url}: bytes changed since the pack (sha256 {short_fingerprint(digest)}..., catalog.json: "
                f"{short_fingerprint(fingerprint)}...)"
            )
    return problems


@contextmanager
def explained_reads(url: str, storage: Storage, manifest: CatalogManifest) -> Iterator[None]:
    """A failed read inside becomes the CatalogError naming the catalog's file that explains it, if one does."""
    try:
        yield
    except Exception as err:
        explained = explain(err, url, storage, manifest)
        if explained is err:
            raise
        raise explained from err


def explain(err: Exception, url: str, storage: Storage, manifest: CatalogManifest) -> Exception:
    """The CatalogError that ``err`` means, or ``err`` itself when the catalog's files do not explain it."""
    chain = list(exception_chain(err))
    if any(isinstance(e, FsnetError) for e in chain):
        return err
    failed = [
        e for e in chain if isinstance(e, (OSError, pa.ArrowException)) and not type(e).__module__.startswith("ray")
    ]
    if not failed:
        return err
    try:
        problems = verify_files(url, storage, manifest)
    except Exception:  # noqa: BLE001 - storage unreachable now: nothing better to say than the original error
        return err
    if not problems:
        return err
    printable = "".join(c if c.isprintable() or c == "\n" else " " for c in str(failed[-1]))  # thrift quotes raw bytes
    lines = [line.strip() for line in printable.splitlines() if line.strip()] or [type(failed[-1]).__name__]
    reason = " ".join(lines[:2]) if lines[0].endswith(":") else lines[0]  # Ray appends its retry advice below
    more = f" (and {len(problems) - 1} more file(s))" if len(problems) > 1 else ""
    return CatalogError(
        f"{problems[0]}{more}; reading it failed ({reason}): {REPAIR_HINT} (fsnet verify {url} lists every bad file)"
    )
