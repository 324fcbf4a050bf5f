import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fsnet.config import load_config
from fsnet.errors import StorageError
from fsnet.storage import Storage, join, protocol_of


def storage_for(location) -> Storage:
    return Storage(load_config(sets=location.sets).storage)


def test_join_and_protocol():
    assert join("s3://b/p", "shards", "x.parquet") == "s3://b/p/shards/x.parquet"
    assert join("/data/cat/", "catalog.json") == "/data/cat/catalog.json"
    assert join("rel", "a") == "rel/a"
    assert join("/data", "s3://other/x") == "s3://other/x"
    assert [protocol_of(u) for u in ("a/b", "/a", "file:///a", "s3://b", "s3a://b", "memory://x")] == [
        "file",
        "file",
        "file",
        "s3",
        "s3",
        "memory",
    ]


def test_bytes_round_trip(location):
    storage = storage_for(location)
    url = location.url("dir/sub/blob.bin")
    assert not storage.exists(url)
    storage.write_bytes(url, b"\x00\x01payload")
    assert storage.exists(url)
    assert storage.read_bytes(url) == b"\x00\x01payload"
    storage.write_bytes(url, b"replaced")
    assert storage.read_bytes(url) == b"replaced"
    assert storage.listdir(location.url("dir/sub")) == ["blob.bin"]
    storage.remove(url)
    assert not storage.exists(url)
    assert storage.listdir(location.url("nothing-here")) == []
    with pytest.raises(StorageError, match="blob.bin: no such file"):
        storage.read_bytes(url)


def test_fsspec_and_pyarrow_see_the_same_objects(location):
    """Our code writes through fsspec; Ray Data reads through pyarrow; same URL, same options."""
    storage = storage_for(location)
    url = location.url("t/table.parquet")
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"x": [1, 2, 3]}), sink)
    storage.write_bytes(url, sink.getvalue().to_pybytes())
    fs, path = storage.arrow_fs(url)
    assert pq.read_table(path, filesystem=fs)["x"].to_pylist() == [1, 2, 3]
    with fs.open_output_stream(path + ".2") as f:
        f.write(b"from-arrow")
    assert storage.read_bytes(url + ".2") == b"from-arrow"


def test_memory_urls():
    storage = Storage(load_config().storage)
    storage.write_text("memory://fsnet-test/a.txt", "hi")
    assert storage.read_text("memory://fsnet-test/a.txt") == "hi"
    fs, path = storage.arrow_fs("memory://fsnet-test/a.txt")
    with fs.open_input_stream(path) as f:
        assert f.read() == b"hi"


@pytest.mark.s3
def test_endpoint_from_environment(s3_endpoint, monkeypatch):
    from tests.conftest import BUCKET, S3_KEY, S3_SECRET

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    storage = Storage(load_config().storage)  # nothing in the config: the standard variables decide
    storage.write_text(f"s3://{BUCKET}/env/x.txt", "via env")
    fs, path = storage.arrow_fs(f"s3://{BUCKET}/env/x.txt")
    with fs.open_input_stream(path) as f:
        assert f.read() == b"via env"


def test_storage_pickles_without_its_filesystems(location):
    import pickle

    storage = storage_for(location)
    storage.exists(location.url("x"))  # builds the filesystem
    clone = pickle.loads(pickle.dumps(storage))
    clone.write_text(location.url("p.txt"), "ok")
    assert storage.read_text(location.url("p.txt")) == "ok"
