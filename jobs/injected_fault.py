"""Test only: a Ray Train worker that dies once at a chosen stage and step, asked for through the environment rather
than the product's config (``fsnet config show`` lists no test keys). tests/jobs/test_train.py sets
``FSNET_INJECT_FAULT=<stage>:<step>`` (e.g. ``2:3``) in the driver's environment; the driver reads it once
(``InjectedFault.requested``) and hands it to its workers in their loop configuration, so a Ray cluster started
before the variable was set (the tests' shared one) still sees it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from fsnet.errors import ConfigError
from fsnet.storage import Storage, join

ENV = "FSNET_INJECT_FAULT"
MARKER = ".fault-injected-stage{stage}-step{step}"  # the fault fires once per place and --out
REPORT_GRACE_S = 5.0  # the dying worker waits this long, so the controller has taken the last report


@dataclass(frozen=True)
class InjectedFault:
    stage: int  # the plan's stage number (fsnet/model/training_plan.py)
    step: int  # the stage's step count, over its epochs

    @classmethod
    def requested(cls) -> InjectedFault | None:
        """The fault ``FSNET_INJECT_FAULT`` asks for, None when it is unset or empty."""
        value = os.environ.get(ENV, "")
        if not value:
            return None
        try:
            stage, step = (int(part) for part in value.split(":"))
        except ValueError:
            raise ConfigError(f"{ENV}={value!r}: expected <stage>:<step>, e.g. 2:3 (a test-only setting)") from None
        return cls(stage, step)

    def fire(self, storage: Storage, out: str, stage: int, step: int) -> None:
        """Kill this process at the fault's stage and step, once per ``out`` (a marker file there says it fired)."""
        if (stage, step) != (self.stage, self.step):
            return
        marker = join(out, MARKER.format(stage=stage, step=step))
        if storage.exists(marker):
            return
        storage.write_text(marker, f"stage {stage} step {step}\n")
        # Ray Train registers a reported checkpoint when its controller next polls the workers: a worker that dies
        # at once may take the last report with it (a real crash can), and then the run resumes one epoch earlier
        # than the test that asks for this fault expects. Let the controller take the report first.
        time.sleep(REPORT_GRACE_S)
        os._exit(1)
