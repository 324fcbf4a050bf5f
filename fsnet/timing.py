"""Wall-clock seconds of a job's steps, as its manifest or results record them (``timings``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """``with timed(timings, "extract"): ...`` sets ``timings["extract"]`` to the block's seconds (also when it
    raises: an interrupted step's time is what it took so far)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - start
