"""Starting a local Ray on a busy machine (jobs/ray_runtime.py start_with_retries): Ray gives its raylet a fixed
30 s an attempt; fsnet tries again until ray.start_timeout_s, then says which setting to raise. No Ray here: the
attempts are stand-ins that fail as Ray does."""

import pytest

from fsnet.config import load_config
from jobs.ray_runtime import RayStartError, start_with_retries

TIMED_OUT = Exception("The current node timed out during startup. This could happen because some of the raylet ...")


class Attempts:
    """ray.init stand-in: fails with ``errors`` in turn, each taking ``seconds`` of a fake clock, then succeeds."""

    def __init__(self, errors: list[Exception], seconds: float = 31.0):
        self.errors, self.seconds, self.now, self.calls, self.stops = list(errors), seconds, 0.0, 0, 0

    def start(self) -> None:
        self.calls += 1
        self.now += self.seconds
        if self.errors:
            raise self.errors.pop(0)

    def stop(self) -> None:
        self.stops += 1


def test_a_start_up_timeout_is_tried_again_within_the_setting():
    ray_cfg = load_config().ray
    attempts = Attempts([TIMED_OUT, TIMED_OUT])
    start_with_retries(attempts.start, attempts.stop, 120.0, ray_cfg, clock=lambda: attempts.now)
    assert (attempts.calls, attempts.stops) == (3, 2)  # two timeouts cleaned up, the third attempt started


def test_past_the_setting_one_line_names_it_and_other_failures_are_not_retried():
    ray_cfg = load_config().ray
    attempts = Attempts([TIMED_OUT] * 10)
    with pytest.raises(
        RayStartError, match=r"timed out during startup.* \(4 attempt\(s\) in 124 s, ray\.start_timeout_s=120: raise it"
    ):
        start_with_retries(attempts.start, attempts.stop, 120.0, ray_cfg, clock=lambda: attempts.now)
    other = Attempts([RuntimeError("address already in use")])
    with pytest.raises(RayStartError, match=r"could not start or join a local Ray: address already in use — or give"):
        start_with_retries(other.start, other.stop, 120.0, ray_cfg, clock=lambda: other.now)
    assert other.calls == 1
