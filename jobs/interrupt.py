"""Ctrl-C in a job: stop at once, say what was kept, exit 130.

Every job is safe to kill at any moment (tests/jobs/test_faults.py kills them with SIGKILL): an index version
becomes live only when CURRENT is written, a catalog only when catalog.json is, a training stage resumes from its
last checkpoint, and the next run removes what an interrupted one left. So Ctrl-C has nothing to tidy and need
not wait for anything. Letting a KeyboardInterrupt unwind instead takes many seconds for ``fsnet index`` (Ray Data's
executor joins its scheduling thread, ray.shutdown() stops the Ray processes one by one, the interpreter's final
garbage collection walks the hundreds of thousands of objects of torch, Ray and pyarrow) and more than a minute for
``fsnet train`` (Ray Train's fit() installs its own SIGINT handler, which waits for the controller to abort the run).

So the CLI installs ``install()`` once: the first SIGINT prints ``interrupted: <what was kept>``, stops Ray and
the processes this one started, and ends the process with ``os._exit(130)``. Ray is stopped with ray.shutdown()
(raylet first, which stops its workers and agents; a raylet that only dies with the driver, by Ray's
PR_SET_PDEATHSIG, leaves its dashboard and runtime-env agents running for a minute or more), bounded by STOP_GRACE_S
because it runs while the interrupted main thread may hold a lock it needs; any child still there then gets
SIGKILL. So ``fsnet index`` and ``fsnet train`` stop within seconds of Ctrl-C and leave no process
(tests/jobs/test_faults.py). On a cluster, this job's tasks and actors go with their owner, the driver. A job says
what stays if it is stopped from now on with ``keep(...)``; ``outside_main_thread(fn)`` runs a call that would
install its own SIGINT handler (Ray Train's fit) where it cannot.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

T = TypeVar("T")

EXIT_STATUS = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
STOP_GRACE_S = 4.0  # ray.shutdown() sends SIGTERM and waits up to 1 s per Ray process: a few seconds on a small machine
_stays = "nothing was written yet"  # what stays if the job stops now: set by the running job (if_stopped_now)


def if_stopped_now(stays: str) -> None:
    """Say what stays as it is if the job is interrupted from now on, e.g. ``idx: CURRENT still v1; the partial
    v2 is removed by the next run``. Jobs call it where the answer changes; it costs nothing outside the CLI."""
    global _stays
    _stays = stays


def what_stays() -> str:
    """What the running job said stays if it is interrupted now (the ``interrupted:`` line)."""
    return _stays


def exit_interrupted(status: int = EXIT_STATUS) -> NoReturn:
    """Stop Ray and this process' children, print ``interrupted: <what was kept>`` on stderr and end the process
    now, without unwinding: no finally blocks, atexit hooks or interpreter finalization, which made Ctrl-C slow."""
    try:
        sys.stdout.flush()
        tree = descendants()  # before Ray stops: a raylet that dies first leaves its agents to init, out of reach
        _stop_ray(STOP_GRACE_S)
        stop_children(grace_s=0.5, pids=tree)
        sys.stderr.write(f"\ninterrupted: {_stays}\n")  # last, below anything Ray's shutdown printed
        sys.stderr.flush()
    finally:
        os._exit(status)


def _stop_ray(bound_s: float) -> None:
    """ray.shutdown() in a helper thread, waited for at most ``bound_s``."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    thread = threading.Thread(target=ray.shutdown, name="fsnet-ray-shutdown", daemon=True)
    thread.start()
    thread.join(bound_s)


def stop_children(grace_s: float = STOP_GRACE_S, pids: list[int] | None = None) -> None:
    """SIGTERM to every process of this one's tree at once (``pids``, else found now: children, their children, ...),
    SIGKILL to those still running after ``grace_s``."""
    children = sorted(set(pids or []) | set(descendants()))
    for pid in children:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while children and time.monotonic() < deadline:
        children = [pid for pid in children if not _reaped(pid)]
        time.sleep(0.05)
    for pid in children:
        _signal(pid, signal.SIGKILL)


def descendants() -> list[int]:
    """Pids of this process' tree below it: its children (a local Ray's GCS, raylet, dashboard), theirs (the
    raylet's workers and agents), and so on (Linux /proc; elsewhere none: Ray's own fate-sharing has to do)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "(comm)", which may hold spaces
        except (OSError, IndexError):
            continue  # exited while we looked
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))  # fields: state, ppid, ...
    found, todo = [], [os.getpid()]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reaped(pid: int) -> bool:
    """True once the child has exited (and is reaped here, so it leaves no zombie)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not ours to wait for, or already reaped (by subprocess' own bookkeeping)
        return not Path(f"/proc/{pid}").exists()
    return done == pid


def install() -> None:
    """Make SIGINT call exit_interrupted() (from the main thread; elsewhere Python cannot install a handler)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: Any) -> None:
    exit_interrupted()


def outside_main_thread(fn: Callable[[], T], poll: Callable[[], None] | None = None, every_s: float = 1.0) -> T:
    """``fn()`` run in a helper thread while the main thread waits for it (a wait that SIGINT interrupts), so that
    a library that installs its own SIGINT handler when called on the main thread (Ray Train's fit() does: its
    graceful abort waited a minute and more) leaves ours in place. Its result is returned, its exception raised
    here. ``poll()``, when given, is called every ``every_s`` while it runs and once after (a progress display)."""
    if poll is None and threading.current_thread() is not threading.main_thread():
        return fn()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as err:  # noqa: BLE001 (handed to the caller as it is)
            outcome["error"] = err

    thread = threading.Thread(target=run, name=getattr(fn, "__qualname__", "fsnet-call"), daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(every_s if poll is not None else None)
        if poll is not None:
            poll()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
