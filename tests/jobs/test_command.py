"""What a person sees when something goes wrong: one line and exit 2 for what they can fix (also from inside Ray
tasks and Ray Train workers), one line + a traceback file and exit 1 for the rest, --debug for the whole story."""

from __future__ import annotations

import os
import re
import sys

import pytest
import typer

from fsnet.errors import StorageError
from jobs.command import absolute_option, run_app, user_error_of


def _app(fn) -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(fn)
    return app


def _run(app: typer.Typer, argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", ["fsnet", *argv])
    with pytest.raises(SystemExit) as stop:
        run_app(app)
    return stop.value.code


def test_user_error_is_one_line_exit_2(monkeypatch, capsys):
    def fails() -> None:
        raise StorageError("runs/x/model.pt: no such file")

    assert _run(_app(fails), [], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: runs/x/model.pt: no such file"


def test_unexpected_error_names_its_traceback_file(monkeypatch, capsys):
    def fails(set_: list[str] = typer.Option(None, "--set")) -> None:
        raise ValueError("a bug of ours\nsecond line")

    monkeypatch.delenv("FSNET_DEBUG", raising=False)
    assert _run(_app(fails), ["--set", "storage.secret=hunter2"], monkeypatch) == 1
    err = capsys.readouterr().err
    assert "ValueError: a bug of ours" in err and "second line" not in err and "Traceback" not in err
    log = re.search(r"full traceback: (\S+)", err).group(1)
    text = open(log).read()
    assert "Traceback" in text and "raise ValueError" in text
    assert "hunter2" not in text and "storage.secret=**********" in text  # credentials never written
    os.remove(log)


def test_debug_flag_and_env_show_the_traceback(monkeypatch, capsys):
    monkeypatch.delenv("FSNET_DEBUG", raising=False)

    def fails() -> None:
        raise ValueError("a bug of ours")

    assert _run(_app(fails), ["--debug"], monkeypatch) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("FSNET_DEBUG", "1")
    assert _run(_app(fails), [], monkeypatch) == 1
    assert "Traceback" in capsys.readouterr().err


def test_ctrl_c_exits_130(monkeypatch, capsys):
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert _run(_app(interrupted), [], monkeypatch) == 130
    assert "interrupted" in capsys.readouterr().err


def test_ray_task_error_unwrapped(ray_cluster):
    """A StorageError raised inside a Ray task arrives as RayTaskError(StorageError), whose message is the whole
    remote traceback; the original one-line error is what the user sees."""
    import ray

    @ray.remote
    def read() -> None:
        raise StorageError("s3://b/catalog/shards/part-00003.parquet: no such file")

    with pytest.raises(Exception) as caught:
        ray.get(read.remote())
    found = user_error_of(caught.value)
    assert isinstance(found, StorageError)
    assert str(found) == "s3://b/catalog/shards/part-00003.parquet: no such file"


def test_ray_train_worker_error_unwrapped(ray_cluster, tmp_path):
    """The case of the issue: a StorageError in a RayTrainWorker comes back wrapped by Ray Train."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def loop(config: dict) -> None:
        raise StorageError("fsnet-demo/run/init.pt: no such file")

    trainer = TorchTrainer(
        loop,
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(storage_path=str(tmp_path), name="fails"),
    )
    with pytest.raises(Exception) as caught:
        trainer.fit()
    found = user_error_of(caught.value)
    assert isinstance(found, StorageError) and str(found) == "fsnet-demo/run/init.pt: no such file"


def test_locations_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_option("fsnet-demo") == str(tmp_path / "fsnet-demo")
    assert absolute_option(["a/results.json", "s3://b/r.json"]) == [str(tmp_path / "a/results.json"), "s3://b/r.json"]
    assert absolute_option("file:///data/x") == "file:///data/x" and absolute_option(None) is None
    assert absolute_option("~/x") == os.path.expanduser("~/x")


def test_unreachable_ray_address_is_one_line(tmp_path):
    """Ray itself retries an unreachable cluster for minutes; fsnet says at once what is wrong and what to try."""
    import subprocess

    fsnet = os.path.join(os.path.dirname(sys.executable), "fsnet")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [fsnet, "synth", "--n", "10", "--out", "synth", "--set", "ray.address=127.0.0.1:9"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ray.address=127.0.0.1:9: nothing answers"), result.stderr


def test_usage_errors_are_their_message_and_exit_2(monkeypatch, capsys):
    """typer >= 0.29 raises usage errors of its own copy of click: still the usage message and exit 2, never an
    unexpected failure with a traceback file (as `fsnet` with a mistyped option or no arguments was)."""

    def index(out: str = typer.Option(..., "--out")) -> None:
        raise AssertionError("not reached")

    assert _run(_app(index), ["--bogus"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert "No such option: --bogus" in err and "traceback" not in err


def test_a_command_imports_its_own_job_alone():
    """`fsnet report` (and submit, config) start without torch, torchvision or Ray Train: 5.3 s of imports on a
    2-core machine that every command paid while jobs/cli.py imported every job to register it."""
    import subprocess

    probe = (
        "import sys; from jobs import cli; "
        "[cli.build_app(cli.command_of(a.split())) for a in ('report x.json', '--debug submit index', 'config show')]; "
        "print(sorted(m for m in ('torch', 'torchvision', 'ray.train', 'jobs.train') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    from jobs import cli

    assert cli.command_of(["--debug", "index", "--out", "x"]) == "index" and cli.command_of(["nonsense"]) is None
    assert {"index", "report", "submit", "config", "jobs"} <= set(cli.JOB_COMMANDS + cli.OTHER_COMMANDS)
