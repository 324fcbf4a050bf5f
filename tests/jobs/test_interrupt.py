"""Ctrl-C (issue 13, part 6): jobs/interrupt.py on its own, in a plain Python process with a child. A real `fsnet
index` interrupted the way a terminal does it is in test_faults.py (it shares that module's catalog and model)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from jobs import interrupt


def test_outside_main_thread_returns_raises_and_leaves_the_main_thread_to_us():
    assert interrupt.outside_main_thread(lambda: threading.current_thread() is threading.main_thread()) is False
    assert interrupt.outside_main_thread(lambda: 42) == 42
    with pytest.raises(KeyError, match="gone"):
        interrupt.outside_main_thread(lambda: {}["gone"])


def test_sigint_says_what_was_kept_stops_children_and_exits_130(tmp_path):
    """The handler alone: what the job said it keeps is printed, a child process (as a local Ray's raylet is)
    is stopped, the exit is at once and 130, whatever the main thread was waiting on."""
    script = textwrap.dedent(f"""
        import subprocess, sys, threading
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from jobs import interrupt
        interrupt.install()
        interrupt.if_stopped_now("idx: CURRENT still v1; the partial v2 is removed by the next run")
        child = subprocess.Popen(["sleep", "300"])
        print(child.pid, flush=True)
        threading.Event().wait()  # blocked, as the driver is in ray.get or a thread join
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 5 and proc.returncode == 130
    assert (
        err.strip().splitlines()[-1] == "interrupted: idx: CURRENT still v1; the partial v2 is removed by the next run"
    )
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(child)], check=False, capture_output=True, text=True)
    assert state.stdout.strip() in ("", "Z")  # gone (or a zombie of the exited parent, about to be reaped)
