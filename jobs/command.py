"""What every job's command line shares: --config / --set, locations made absolute, config resolution, and what a
person sees when something goes wrong.

- An error the user can fix (``FsnetError``; also one raised inside a Ray task, actor or Ray Train worker, which
  arrives wrapped) prints one line naming the file, key or value, and exits 2 (or its ``exit_code``: 3 when the
  re-index gate refuses a version).
- Any other exception prints one line saying where its full traceback was written, and exits 1; ``--debug``
  (anywhere on the command line) or ``FSNET_DEBUG=1`` prints the traceback instead.
- Ctrl-C prints one line saying what was kept and exits 130 at once (jobs/interrupt.py); what a job had published
  stays published (every job writes its pointer file last: catalog.json, CURRENT, model.pt), and a re-run cleans
  what it left half-written.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import traceback
from typing import Annotated, Any, Callable, Optional

import click
import typer
from rich.console import Console

from fsnet.config import REDACTED, SECRET_KEYS, Config, load_config
from fsnet.errors import FsnetError, exception_chain
from fsnet.storage import absolute_url
from jobs import interrupt

console = Console()
err_console = Console(stderr=True)


DEBUG_FLAG = "--debug"
DEBUG_ENV = "FSNET_DEBUG"
EXIT_USER_ERROR = 2
EXIT_UNEXPECTED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

ConfigOption = Annotated[
    Optional[list[str]],
    typer.Option("--config", "-c", help="Preset name (configs/<name>.yaml) or YAML file; repeatable, later ones win."),
]
SetOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set", help="Override one key, e.g. --set split.seed=3 (value parsed as YAML); repeatable, comes last."
    ),
]


def absolute_option(value: Any) -> Any:
    """typer callback of every location option (--out, --catalog, --index, --model, --source, ...): a plain
    path becomes absolute here, where the command starts, before it travels to Ray workers."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [absolute_url(v) for v in value]
    return absolute_url(value)


def resolve_config(config: list[str] | None, sets: list[str] | None, **options: tuple[str, Any]) -> Config:
    """default.yaml <- presets <- command-line options (flag -> (dotted key, value), None = not given) <- --set.
    Config keys that hold locations of their own (``source.path``) are made absolute like the options."""
    given = [(f"--{flag.replace('_', '-')}", key, value) for flag, (key, value) in options.items() if value is not None]
    cfg = load_config(config or (), sets or (), given)
    if cfg.source.path is not None:
        cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"path": absolute_url(cfg.source.path)})})
    return cfg


def run_app(app: typer.Typer) -> None:
    """Run a typer app and turn what can go wrong into what a person can read (see the module docstring)."""
    debug = _take_debug_flag()
    interrupt.install()  # Ctrl-C: say what was kept and stop now (jobs/interrupt.py), not unwind for a minute
    try:
        code = app(standalone_mode=False)  # click's standalone mode would turn Ctrl-C into "Aborted!" and exit 1
    except SystemExit:
        raise
    except (click.ClickException, typer.TyperException) as err:  # usage errors: their message and exit status (2)
        # (typer >= 0.29 raises those of its own copy of click, whose base is TyperException: caught as click's
        # alone, `fsnet` without arguments and a mistyped option were reported as failures with a traceback file)
        err.show()
        sys.exit(err.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort, typer.Abort):
        code = EXIT_INTERRUPTED
    except BaseException as err:  # noqa: BLE001 - the one place where every failure is turned into a message
        user_error = user_error_of(err) or unreachable_store(err)
        if user_error is not None and not debug:
            err_console.print(f"[bold red]error:[/] {_one_line(user_error)}", soft_wrap=True, highlight=False)
            sys.exit(getattr(user_error, "exit_code", EXIT_USER_ERROR))  # a verdict (the re-index gate's 3) has its own
        if debug:
            traceback.print_exception(err)
            sys.exit(EXIT_USER_ERROR if user_error is not None else EXIT_UNEXPECTED)
        log = _write_traceback(err)
        err_console.print(
            f"[bold red]error:[/] {type(err).__name__}: {_one_line(err)[:300]}\n"
            f"  full traceback: {log} (or run again with {DEBUG_FLAG})",
            soft_wrap=True,
            highlight=False,
        )
        sys.exit(EXIT_UNEXPECTED)
    if code == EXIT_INTERRUPTED:  # typer turns a KeyboardInterrupt into Exit(130), which returns here
        err_console.print(f"[bold yellow]interrupted[/]: {interrupt.what_stays()}", soft_wrap=True, highlight=False)
    sys.exit(code if isinstance(code, int) else 0)


def user_error_of(err: BaseException) -> FsnetError | None:
    """The FsnetError behind ``err``: itself, or the original one that Ray wrapped (RayTaskError's cause, a Ray
    Train worker's failure, an exception's __cause__/__context__); None when there is none."""
    for candidate in exception_chain(err):
        if isinstance(candidate, FsnetError) and not _is_ray_wrapper(candidate):
            return candidate
    return None


# what the S3 clients raise when an endpoint refuses, never answers or drops the connection (botocore, aiohttp, fsspec)
UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ClientConnectorError",
    "ServerTimeoutError",
    "FSTimeoutError",
}


def unreachable_store(err: BaseException) -> FsnetError | None:
    """An object store that could not be reached (after storage.retries attempts within the storage timeouts), as
    one line naming the endpoint and what to check; None for any other failure."""
    for candidate in exception_chain(err):
        if type(candidate).__name__ in UNREACHABLE:
            return FsnetError(
                f"the object store does not answer: {_one_line(candidate)} — check storage.endpoint_url (or "
                "AWS_ENDPOINT_URL) and the network; each request waits storage.connect_timeout_s / "
                "storage.read_timeout_s, storage.retries times"
            )
    return None


def single_command(fn: Callable[..., Any]) -> typer.Typer:
    """A typer app holding one job command (for ``python -m jobs.<name>``)."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(fn)
    return app


def _is_ray_wrapper(err: BaseException) -> bool:
    """Ray raises ``RayTaskError(StorageError)``: a class that is both, whose message is the whole remote
    traceback; its ``cause`` is the original exception, which we print instead."""
    return getattr(err, "cause", None) is not None and type(err).__module__.startswith("ray.")


def _one_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return " ".join(lines) if len(lines) <= 1 else lines[0]


def _take_debug_flag() -> bool:
    """``--debug`` anywhere before a ``--`` (what follows ``--`` belongs to a submitted job), or FSNET_DEBUG=1."""
    argv = sys.argv
    end = argv.index("--") if "--" in argv else len(argv)
    found = DEBUG_FLAG in argv[1:end]
    if found:
        sys.argv = [a for i, a in enumerate(argv) if not (a == DEBUG_FLAG and 0 < i < end)]
    return found or os.environ.get(DEBUG_ENV, "") not in ("", "0", "false")


def _redacted(argv: list[str]) -> list[str]:
    return [f"{a.split('=', 1)[0]}={REDACTED}" if a.split("=", 1)[0].strip() in SECRET_KEYS else a for a in argv]


def _write_traceback(err: BaseException) -> str:
    """The full traceback (every chained cause included) in a log file under the system temp dir."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, path = tempfile.mkstemp(prefix=f"fsnet-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(f"fsnet {' '.join(_redacted(sys.argv[1:]))}\n\n")
        f.write("".join(traceback.format_exception(err)))
    return path
