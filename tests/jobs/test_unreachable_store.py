"""An S3 endpoint that refuses connections, or accepts and never answers: one line naming the endpoint and what to
check, exit 2, within the storage timeouts (storage.connect_timeout_s / read_timeout_s, storage.retries), instead
of a traceback file or minutes of silence."""

import os
import socket
import subprocess
import sys
import threading
import time


def verify(endpoint: str, *sets: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_REGION": "us-east-1"}
    args = ["--set", f"storage.endpoint_url={endpoint}", *(x for s in sets for x in ("--set", s))]
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.verify", "s3://bucket/catalog", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    return done, time.monotonic() - start


def one_line(done: subprocess.CompletedProcess) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    return lines[0]


def test_an_endpoint_that_refuses_is_one_line_naming_it():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done, _ = verify(f"http://127.0.0.1:{port}")
    line = one_line(done)
    assert "the object store does not answer: Could not connect to the endpoint URL" in line
    assert f'"http://127.0.0.1:{port}/bucket/catalog' in line
    assert "check storage.endpoint_url" in line


def test_an_endpoint_that_never_answers_is_given_up_within_the_timeouts():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        done, took = verify(f"http://127.0.0.1:{port}", "storage.read_timeout_s=1", "storage.retries=2")
        assert "the object store does not answer: Read timeout on endpoint URL" in one_line(done)
        assert took < 60, f"{took:.0f} s: the timeouts were not applied"
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        server.close()
