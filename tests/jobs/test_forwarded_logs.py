"""What the driver shows of the lines Ray's workers forward: fsnet's own lines and tracebacks, not Ray's internals."""

import subprocess
import sys
import textwrap

from jobs.ray_runtime import RAY_INTERNAL_LINE, without_ray_lines

REPORT = (
    "Reporting training result 3: TrainingReport(checkpoint=None, metrics={'loss': 7.14, 'stage': 1, 'epoch': 2}, "
    "validation=False) from rank 1"
)
CPP = "[2026-11-29 15:44:03,465 E 9259 9259] core_worker.cc:2465: Actor with class name: 'MapWorker' has arguments"
DATA = "\u2714\ufe0f  Dataset train_0359vWO2HA48XcEq4jOQXg_1 execution finished in 0.27 seconds"
SIGSEGV = [
    "*** SIGSEGV received at time=1765014321 on cpu 1 ***",
    "PC: @     0x7f3a2b1c4d5e  (unknown)  ray::core::CoreWorker::Disconnect()",
    "    @     0x7f3a2b1c4d5e        208  absl::lts_20230802::WriteFailureInfo()",
]
FAULTHANDLER = [  # a Ray Data task killed at shutdown on a loaded machine, forwarded by Ray
    "Fatal Python error: Segmentation fault",
    "",
    "Current thread 0x00007f5e2a7fc640 (most recent call first):",
    '  File "/venv/lib/python3.11/site-packages/pyarrow/parquet/core.py", line 1400 in _fetch',
    "Extension modules: msgpack._cmsgpack, google._upb._message, psutil._psutil_linux (total: 98)",
]
OURS = "a line a worker of ours prints: loss 7.1410, 151 images/s"


def test_ray_train_report_lines_ray_data_lines_and_cpp_logs_are_dropped_fsnet_lines_kept():
    assert RAY_INTERNAL_LINE.search(REPORT) and RAY_INTERNAL_LINE.search(CPP) and RAY_INTERNAL_LINE.search(DATA)
    assert not RAY_INTERNAL_LINE.search(OURS)
    assert not RAY_INTERNAL_LINE.search("Traceback (most recent call last):")
    assert all(RAY_INTERNAL_LINE.search(line) for line in SIGSEGV)  # Ray's C++ stack dump at shutdown
    assert not RAY_INTERNAL_LINE.search('  File "/work/jobs/train.py", line 610, in stage_loop')
    shown = []
    without_ray_lines(lambda data, *a, **k: shown.extend(data["lines"]))({"lines": [REPORT, OURS, DATA, CPP]})
    assert shown == [OURS]
    shown.clear()
    without_ray_lines(lambda data, *a, **k: shown.extend(data["lines"]))({"lines": [*FAULTHANDLER, OURS]})
    assert shown == [OURS]  # the faulthandler dump and its blank lines dropped; a traceback's frames are kept (above)


def test_ray_lines_this_process_writes_below_python_are_dropped_and_the_rest_kept():
    """What the driver's own C++ core worker writes to file descriptor 2 (Ray Data's actor-pool line) never reaches
    the terminal; other writes to fd 2 and Python's own stderr do, whole and in order, also at exit."""
    script = textwrap.dedent(
        f"""
        import os, sys
        from jobs.ray_runtime import filter_driver_stderr
        filter_driver_stderr()
        os.write(2, b"before\\n" + {CPP!r}.encode() + b"\\nafter\\n")
        print("python's stderr", file=sys.stderr)
        os.write(2, b"last, without a newline")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "core_worker.cc" not in done.stderr
    assert "before\nafter\n" in done.stderr and "python's stderr\n" in done.stderr
    assert done.stderr.endswith("last, without a newline")
