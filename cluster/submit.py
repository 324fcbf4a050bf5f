"""Submit fsnet jobs to a Ray cluster through the Ray Jobs API, and follow them.

    fsnet submit pipeline --address http://127.0.0.1:8265 --config tiny --wait -- --out s3://b/runs/tiny --synthetic
    fsnet submit index --address http://head:8265 --set storage.region=eu-west-1 -- --model s3://b/run/model.pt \\
        --catalog s3://b/catalogs/shop --out s3://b/index/shop
    fsnet submit reindex --wait -- --catalog s3://b/catalogs/shop --index s3://b/index/shop
    fsnet jobs status ID | fsnet jobs logs ID | fsnet jobs stop ID

The job runs `python -m jobs.<JOB> [--config ...] [--set ...] [arguments after --]` with this checkout as its
working_dir (without data, outputs, virtual environments). Credentials never travel on the command line, where the
Jobs API would show them: storage.key / secret / token given with --set, and AWS_* variables of this shell, go into
the job's environment variables, and nothing here prints them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from ray.job_submission import JobStatus, JobSubmissionClient
from rich.console import Console

from fsnet.errors import FsnetError

# The jobs a cluster runs (`python -m jobs.<name>`), in pipeline order: the one list; jobs/cli.py registers these as
# `fsnet <name>` and adds the commands that run only where the person is (search, verify, demo).
JOBS = ("synth", "pack", "train", "index", "reindex", "evaluate", "report", "ablation", "pipeline")
REPO = Path(__file__).resolve().parents[1]
EXCLUDES = [  # what the working_dir upload leaves out: data, outputs, environments, caches
    ".git",
    ".venv",
    ".devbundle",
    "fsnet-demo",
    "catalogs",
    "runs",
    "reports",
    "**/__pycache__",
    "*.pt",
    "*.parquet",
    "*.faiss",
]
SECRET_SETS = {
    "storage.key": "AWS_ACCESS_KEY_ID",
    "storage.secret": "AWS_SECRET_ACCESS_KEY",
    "storage.token": "AWS_SESSION_TOKEN",
}
FORWARDED_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "TORCH_HOME",
)
TERMINAL = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
LAST_LINES = 30  # log lines shown when a job fails
POLL_S = 2.0


def default_address() -> str:
    return os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265")


def client(address: str | None) -> JobSubmissionClient:
    url = address or default_address()
    try:
        return JobSubmissionClient(url)
    except Exception as err:  # the Jobs API is unreachable: say where we looked
        raise FsnetError(
            f"no Ray Jobs API at {url} ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "start a cluster (ray up ray_config.yaml, ray start --head) or pass --address"
        ) from None


def split_secrets(sets: list[str]) -> tuple[list[str], dict[str, str]]:
    """--set items -> (those that may be shown, environment variables for the credentials among them)."""
    shown, env = [], {}
    for item in sets:
        key, _, value = item.partition("=")
        if key.strip() in SECRET_SETS:
            env[SECRET_SETS[key.strip()]] = value
        else:
            shown.append(item)
    return shown, env


def entrypoint(job: str, configs: list[str], sets: list[str], args: list[str]) -> str:
    import shlex

    if job not in JOBS:
        raise FsnetError(f"unknown job '{job}' (jobs: {', '.join(JOBS)})")
    words = ["python", "-m", f"jobs.{job}"]
    for c in configs:
        words += ["--config", c]
    for s in sets:
        words += ["--set", s]
    return shlex.join([*words, *args])


def runtime_env(secret_env: dict[str, str], extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    env.update(secret_env)
    env.update(extra_env or {})
    if not (
        REPO / "pyproject.toml"
    ).exists():  # fsnet installed as a package, not a checkout: the cluster's own copy runs
        return {"env_vars": env}
    return {"working_dir": str(REPO), "excludes": EXCLUDES, "env_vars": env}


def submit(
    address: str | None,
    job: str,
    configs: list[str],
    sets: list[str],
    args: list[str],
    extra_env: dict[str, str] | None = None,
) -> tuple[JobSubmissionClient, str]:
    shown, secret_env = split_secrets(sets)
    jobs = client(address)
    submission_id = jobs.submit_job(
        entrypoint=entrypoint(job, configs, shown, args), runtime_env=runtime_env(secret_env, extra_env)
    )
    return jobs, submission_id


def wait(jobs: JobSubmissionClient, submission_id: str, follow: bool, echo) -> JobStatus:
    """Until the job ends; with ``follow`` its log is echoed as it grows."""
    shown = 0
    while True:
        status = jobs.get_job_status(submission_id)
        if follow:
            logs = jobs.get_job_logs(submission_id)
            if len(logs) > shown:
                echo(logs[shown:].rstrip("\n"))
                shown = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(POLL_S)


def last_lines(jobs: JobSubmissionClient, submission_id: str, n: int = LAST_LINES) -> str:
    return "\n".join(jobs.get_job_logs(submission_id).rstrip("\n").splitlines()[-n:])


# ----- command line ------------------------------------------------------------------------------------------

AddressOption = Annotated[
    str | None,
    typer.Option("--address", help="Ray Jobs API (dashboard) URL; default $RAY_ADDRESS or http://127.0.0.1:8265."),
]
jobs_app = typer.Typer(help="Jobs submitted to a Ray cluster: status, logs, stop.", no_args_is_help=True)


console = Console()  # cluster/ imports nothing from jobs/: its own console, as plain as jobs.command's


def cli(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help=f"One of: {', '.join(JOBS)}.")],
    address: AddressOption = None,
    config: Annotated[
        list[str] | None, typer.Option("--config", "-c", help="Preset or YAML file, passed to the job; repeatable.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="key=value passed to the job (credentials go as environment variables)."),
    ] = None,
    wait_: Annotated[
        bool, typer.Option("--wait", help="Wait for the job to end; a failed job ends this command non-zero.")
    ] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Print the job's log as it runs (implies --wait).")] = False,
) -> None:
    """Submit an fsnet job to a Ray cluster (arguments after -- go to the job)."""
    jobs, submission_id = submit(address, job, config or [], set_ or [], list(ctx.args))
    console.print(
        f"submitted {job}: {submission_id} (fsnet jobs status {submission_id} --address {address or default_address()})"
    )
    if not (wait_ or follow):
        return
    status = wait(jobs, submission_id, follow, lambda text: console.print(text, markup=False, highlight=False))
    if status != JobStatus.SUCCEEDED:
        raise FsnetError(
            f"job {submission_id} ({job}) {status.value}; its last log lines:\n{last_lines(jobs, submission_id)}"
        )
    console.print(f"job {submission_id} ({job}) SUCCEEDED")


@jobs_app.command("status")
def status_cli(submission_id: str, address: AddressOption = None) -> None:
    """A submitted job's status."""
    info = client(address).get_job_info(submission_id)
    console.print(f"{submission_id}: {info.status.value}" + (f" ({info.message})" if info.message else ""))


@jobs_app.command("logs")
def logs_cli(submission_id: str, address: AddressOption = None) -> None:
    """A submitted job's log so far."""
    console.print(client(address).get_job_logs(submission_id), markup=False, highlight=False)


@jobs_app.command("stop")
def stop_cli(submission_id: str, address: AddressOption = None) -> None:
    """Stop a submitted job."""
    stopped = client(address).stop_job(submission_id)
    console.print(f"{submission_id}: {'stop requested' if stopped else 'already ended'}")
