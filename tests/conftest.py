"""Shared real parts: one local Ray per session, one moto S3 server per session, and a `location` fixture
that runs a test once on a local folder and once on s3:// through that server."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pytest

# No real AWS may be reached from tests, and botocore must not wait on instance metadata.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(name, None)

# rich wraps console output at the terminal's width; tests that read a job's output must not depend on the length
# of a temporary path (tests of what a person sees run fsnet as a subprocess with its own COLUMNS).
os.environ["COLUMNS"] = "200"

BUCKET = "fsnet-test"
S3_KEY, S3_SECRET = "testing-key-id", "testing-secret-value"


@pytest.fixture(scope="session")
def ray_cluster():
    """The one local Ray of the session (2 CPUs); jobs see it running and use it."""
    import ray

    from jobs.ray_runtime import start_local_ray

    start_local_ray(num_cpus=2, dashboard=True)  # the dashboard serves the state API Ray Train polls
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server on 127.0.0.1 (random port) with the test bucket; s3fs and pyarrow talk HTTP to it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET, region_name="us-east-1"
    ).create_bucket(Bucket=BUCKET)
    yield endpoint
    server.stop()


@dataclass
class Location:
    """A place to write to: ``url(name)`` gives a fresh URL under it; ``sets`` are the storage overrides."""

    kind: str
    base: str
    sets: list[str]

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def location(request, tmp_path) -> Location:
    if request.param == "local":
        return Location("local", str(tmp_path), [])
    endpoint = request.getfixturevalue("s3_endpoint")
    return Location("s3", f"s3://{BUCKET}/{uuid.uuid4().hex[:10]}", s3_sets(endpoint))


def s3_sets(endpoint: str) -> list[str]:
    return [
        f"storage.endpoint_url={endpoint}",
        f"storage.key={S3_KEY}",
        f"storage.secret={S3_SECRET}",
        "storage.region=us-east-1",
    ]


@pytest.fixture(scope="session")
def device():
    """Where model tests run: $FSNET_TEST_DEVICE (cpu by default; cuda on a GPU machine)."""
    import torch

    return torch.device(os.environ.get("FSNET_TEST_DEVICE", "cpu"))
