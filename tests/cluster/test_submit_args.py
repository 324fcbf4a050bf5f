"""What `fsnet submit` sends: the entrypoint (no credentials in it) and the runtime env."""

import shlex

import pytest

from cluster.submit import entrypoint, runtime_env, split_secrets
from fsnet.errors import FsnetError


def test_credentials_leave_the_command_line_for_the_environment(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    shown, env = split_secrets(
        ["storage.key=AKIA1", "storage.secret=s3cr3t", "storage.token=tok", "storage.endpoint_url=http://h:9000"]
    )
    assert shown == ["storage.endpoint_url=http://h:9000"]
    assert env == {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s3cr3t", "AWS_SESSION_TOKEN": "tok"}
    command = entrypoint("reindex", ["tiny"], shown, ["--catalog", "s3://b/c a t", "--index", "s3://b/i"])
    assert shlex.split(command) == [
        "python",
        "-m",
        "jobs.reindex",
        "--config",
        "tiny",
        "--set",
        "storage.endpoint_url=http://h:9000",
        "--catalog",
        "s3://b/c a t",
        "--index",
        "s3://b/i",
    ]
    assert "s3cr3t" not in command
    renv = runtime_env(env)
    assert renv["env_vars"]["AWS_SECRET_ACCESS_KEY"] == "s3cr3t" and renv["env_vars"]["AWS_REGION"] == "eu-west-1"
    assert ".venv" in renv["excludes"] and ".git" in renv["excludes"]


def test_unknown_job_lists_the_jobs():
    with pytest.raises(FsnetError, match="unknown job 'indx' \\(jobs: synth, pack, train, index, reindex, evaluate"):
        entrypoint("indx", [], [], [])
