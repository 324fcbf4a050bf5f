"""fsnet commands run as a user runs them: a subprocess in a session of its own (so that its local Ray's
processes share its process group and a signal can reach them all, as a terminal's Ctrl-C does), stopped at a
chosen moment. What the fault and interrupt tests share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FSNET = str(Path(sys.executable).with_name("fsnet"))  # the installed entry point, as a user types it


def user_env() -> dict[str, str]:
    """This machine's environment as a person's shell has it: no Ray address of the test session, a wide
    terminal so that rich does not wrap the paths we look for."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["COLUMNS"] = "400"
    return env


@dataclass
class Job:
    proc: subprocess.Popen
    log: Path  # stdout and stderr together

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start(args: list[str], log: Path) -> Job:
    """``fsnet <args>`` in a new session, with a local Ray of its own (RAY_ADDRESS unset: the test session's Ray
    is not for it to join)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    handle = log.open("w")
    proc = subprocess.Popen([FSNET, *args], stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    handle.close()
    return Job(proc, log)


def wait_until(job: Job, condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 20 ms until it holds (True) or the job exits or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if job.proc.poll() is not None:
            return condition()
        time.sleep(0.02)
    return False


def signal_group(job: Job, sig: int) -> bool:
    """Send ``sig`` to the job's process group; False when the job had already exited."""
    if job.proc.poll() is not None:
        return False
    os.killpg(job.proc.pid, sig)
    return True


def session_pids(job: Job) -> list[int]:
    """Processes still in the job's session: its Ray's head processes share its process group, Ray's workers
    have groups of their own in the same session."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, ...
        except (OSError, IndexError):
            continue
        if int(fields[3]) == job.proc.pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def reap(job: Job, timeout: float = 60) -> int:
    """The job's exit status, once it and every process of its session are gone (SIGKILL to those left): a test
    leaves no Ray of its subprocess behind, to load the machine or to write into a folder it checks."""
    try:
        job.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(job.proc.pid, signal.SIGKILL)
        job.proc.wait(10)
    deadline = time.monotonic() + 30
    while (left := session_pids(job)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    return job.proc.returncode
