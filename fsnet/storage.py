"""Every location is a URL: a plain path, ``file://``, ``s3://bucket/prefix``, ``memory://`` (or any fsspec
protocol). ``Storage`` gives an fsspec filesystem for our own code and a pyarrow filesystem for Ray Data
from the same URL and the same options, so both always talk to the same endpoint with the same credentials.

S3 options come from the config's ``storage`` section or the standard AWS environment variables
(``AWS_ENDPOINT_URL[_S3]``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ...). Credentials
are held as pydantic ``SecretStr`` and never appear in output, logs, saved configs or manifests.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import fsspec
import pyarrow.fs as pafs

from fsnet.config import StorageConfig
from fsnet.errors import StorageError


def protocol_of(url: str) -> str:
    """'s3', 'file', 'memory', ...; a plain path is 'file'."""
    if "://" not in url:
        return "file"
    proto = url.split("://", 1)[0].lower()
    return "s3" if proto in {"s3", "s3a"} else proto


def join(url: str, *parts: str) -> str:
    """Join URL path segments with '/', keeping the scheme (``join('s3://b/p', 'x.csv')``)."""
    out = url.rstrip("/") if url not in {"/", ""} else url
    for part in parts:
        if "://" in part or part.startswith("/"):
            out = part.rstrip("/") if len(part) > 1 else part
        else:
            out = f"{out}/{part}" if out else part
    return out


def parent(url: str) -> str:
    """The folder holding ``url`` (``parent('s3://b/run/model.pt') == 's3://b/run'``)."""
    path = url.rstrip("/")
    if "/" not in path:
        return "."
    head = path.rpartition("/")[0]
    return url if head.endswith(":/") else (head or "/")


def is_absolute(url: str) -> bool:
    return "://" in url or url.startswith("/")


def absolute_url(url: str) -> str:
    """A plain path made absolute against this process's working directory (``~`` expanded); URLs with a
    scheme (``file://``, ``s3://``, ...) as they are. Called once where a command starts, before a location
    travels to Ray workers: they run in working directories of their own, where a relative path means
    another folder."""
    if "://" in url:
        return url
    return os.path.abspath(os.path.expanduser(url))


class Storage:
    """Filesystems for URLs under one set of storage options; picklable (Ray tasks receive it)."""

    def __init__(self, cfg: StorageConfig):
        self.cfg = cfg

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg}  # filesystems are rebuilt lazily where the object lands

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.cfg = state["cfg"]

    # ----- options --------------------------------------------------------------------------------------
    @property
    def endpoint_url(self) -> str | None:
        return self.cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")

    @property
    def region(self) -> str | None:
        return self.cfg.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")

    def _secret(self, name: str) -> str | None:
        value = getattr(self.cfg, name)
        return value.get_secret_value() if value is not None else None

    # ----- filesystems ----------------------------------------------------------------------------------
    @cached_property
    def _s3fs(self) -> fsspec.AbstractFileSystem:
        client_kwargs: dict[str, Any] = {}
        if self.region:
            client_kwargs["region_name"] = self.region
        fs = fsspec.filesystem(
            "s3",
            key=self._secret("key"),
            secret=self._secret("secret"),
            token=self._secret("token"),
            anon=self.cfg.anonymous,
            endpoint_url=self.endpoint_url,
            client_kwargs=client_kwargs,
            config_kwargs={
                "connect_timeout": self.cfg.connect_timeout_s,
                "read_timeout": self.cfg.read_timeout_s,
                "retries": {"max_attempts": 1, "mode": "standard"},
            },
            skip_instance_cache=True,
        )
        # s3fs retries a timed-out request itself: storage.retries attempts; botocore's own retries under it (off
        # above) would multiply them (5 x 5 attempts of a stalled endpoint: minutes of silence)
        fs.retries = self.cfg.retries
        return fs

    def fs(self, url: str) -> tuple[fsspec.AbstractFileSystem, str]:
        """(fsspec filesystem, path within it) for ``url``."""
        proto = protocol_of(url)
        if proto == "s3":
            return self._s3fs, url.split("://", 1)[1]
        if proto == "file":
            path = url.split("://", 1)[1] if url.startswith("file://") else url
            return fsspec.filesystem("file"), os.path.abspath(path)
        fs, path = fsspec.core.url_to_fs(url)
        return fs, path

    def arrow_fs(self, url: str) -> tuple[pafs.FileSystem, str]:
        """(pyarrow filesystem, path within it) for ``url``: what Ray Data's readers and writers take."""
        proto = protocol_of(url)
        fs, path = self.fs(url)
        if proto == "file":
            return pafs.LocalFileSystem(), path
        if proto == "s3":
            kwargs: dict[str, Any] = {
                "access_key": self._secret("key"),
                "secret_key": self._secret("secret"),
                "session_token": self._secret("token"),
                "anonymous": self.cfg.anonymous,
                "region": self.region,
                "connect_timeout": self.cfg.connect_timeout_s,
                "request_timeout": self.cfg.read_timeout_s,
                "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.cfg.retries),
            }
            if self.endpoint_url:
                parts = urlsplit(self.endpoint_url if "://" in self.endpoint_url else f"https://{self.endpoint_url}")
                kwargs["endpoint_override"] = parts.netloc
                kwargs["scheme"] = parts.scheme
            return pafs.S3FileSystem(**{k: v for k, v in kwargs.items() if v is not None}), path
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path

    # ----- small helpers our own code uses --------------------------------------------------------------
    def check_output_folder(self, url: str, option: str = "--out") -> None:
        """A job's output folder, checked before any work and without writing anything: not a file (nor under
        one), and on a local disk in a folder this process may write to. One StorageError naming the option and
        the path; without it the failure came from inside a Ray actor after the work, wrapped past recognition."""
        fs, path = self.fs(url)
        proto = protocol_of(url)
        if proto == "s3":
            if fs.isfile(path):
                raise StorageError(f"{option} {url}: an object, not a folder (prefix); give a folder URL")
            return
        if proto != "file":
            return
        probe = path
        while probe and not os.path.exists(probe):
            probe = os.path.dirname(probe.rstrip("/")) if probe != "/" else ""
        if probe and not os.path.isdir(probe):
            where = "is a file" if probe == path else f"is under the file {probe}"
            raise StorageError(f"{option} {url}: {where}, not a folder; give a folder")
        if probe and not os.access(probe, os.W_OK | os.X_OK):
            raise StorageError(f"{option} {url}: cannot be written ({probe} is not writable by this user)")

    def exists(self, url: str) -> bool:
        fs, path = self.fs(url)
        fs.invalidate_cache(path)  # s3fs caches listings; other processes (Ray workers) write too
        return fs.exists(path)

    def read_bytes(self, url: str) -> bytes:
        fs, path = self.fs(url)
        try:
            return fs.cat_file(path)
        except FileNotFoundError:
            raise StorageError(f"{url}: no such file") from None

    def read_text(self, url: str) -> str:
        return self.read_bytes(url).decode("utf-8")

    def write_bytes(self, url: str, data: bytes) -> None:
        """Write a whole object. Readers see the old object or the new one, never half of it: S3 PUTs are
        atomic; on a local disk we write a temporary file beside it and rename."""
        fs, path = self.fs(url)
        if protocol_of(url) == "file":
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            return
        fs.pipe_file(path, data)

    def write_text(self, url: str, text: str) -> None:
        self.write_bytes(url, text.encode("utf-8"))

    def create(self, url: str, data: bytes) -> bool:
        """Write a whole object only if none is there: True when this call created it, False when one existed.
        Of two callers at once exactly one gets True: on S3 a conditional PUT (If-None-Match: *), on a local disk a
        hard link of a finished temporary file (so the object appears whole); memory:// holds one process."""
        fs, path = self.fs(url)
        proto = protocol_of(url)
        if proto == "file":
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            finally:
                os.remove(tmp)
            return True
        if proto == "s3":
            try:
                fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            return True
        if fs.exists(path):
            return False
        fs.pipe_file(path, data)
        return True

    def listdir(self, url: str) -> list[str]:
        """Names (not paths) directly under ``url``; empty when it does not exist."""
        fs, path = self.fs(url)
        try:
            fs.invalidate_cache(path)
            entries = fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        # an object store may list the folder's own marker object (written by some writers, Ray's among them)
        return sorted(posixpath.basename(e.rstrip("/")) for e in entries if e.rstrip("/") != path.rstrip("/"))

    def remove(self, url: str) -> None:
        fs, path = self.fs(url)
        try:
            fs.rm(path)
        except FileNotFoundError:
            pass
