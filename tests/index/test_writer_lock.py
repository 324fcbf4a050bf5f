"""One writer per index (fsnet/index/writer_lock.py), on a local folder and on a real S3 API: of two takers one
wins, the other is refused naming the holder; a holder whose process is gone on this host is taken over; one on
another host is named with the file to remove."""

import json
import socket
import subprocess
import sys
import threading

import pytest

from fsnet.config import load_config
from fsnet.index.writer_lock import LOCK_FILE, IndexBusy, WriterLock
from fsnet.storage import Storage, join


def test_of_two_creates_at_once_exactly_one_wins(location):
    storage = Storage(load_config([], location.sets).storage)
    url = location.url("index/WRITER")
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(storage.create(url, f"{n}".encode()))) for n in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]
    assert storage.read_text(url) in {"0", "1", "2", "3"}


def test_a_second_writer_is_refused_and_the_first_releases_only_its_own(location):
    storage = Storage(load_config([], location.sets).storage)
    index = location.url("index")
    with WriterLock.acquire(storage, index) as first:
        with pytest.raises(IndexBusy, match=r"another run is writing this index \(process \d+ on this host, since "):
            WriterLock.acquire(storage, index)
        assert storage.exists(first.url)
    assert not storage.exists(join(index, LOCK_FILE))
    with WriterLock.acquire(storage, index):  # free again
        pass


def test_a_holder_gone_is_taken_over_and_one_on_another_host_is_named(location):
    storage = Storage(load_config([], location.sets).storage)
    index, url = location.url("index"), location.url(f"index/{LOCK_FILE}")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {"host": socket.gethostname(), "pid": int(gone.stdout), "started": "then", "token": "x"}
    storage.write_text(url, json.dumps(dead))
    with WriterLock.acquire(storage, index) as taken:  # its process ended: the lock was left by a killed run
        assert json.loads(storage.read_text(url))["token"] == taken.token
    elsewhere = {"host": "another-node", "pid": 1, "started": "2026-12-06T10:00:00+00:00", "token": "y"}
    storage.write_text(url, json.dumps(elsewhere))
    with pytest.raises(IndexBusy, match=rf"process 1 on host another-node, .* or remove {url} if that run is gone"):
        WriterLock.acquire(storage, index)
    assert json.loads(storage.read_text(url))["token"] == "y"  # left as it was
