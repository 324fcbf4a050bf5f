"""A training stage as the driver shows it: a bar over the stage's epochs with the time left, and one line per epoch.

The epochs run in Ray Train workers; rank 0 appends each epoch's figures to ``<out>/train_metrics.jsonl``
(jobs/train.py ``Worker.end_epoch``), written whole each time (storage.write_text: a reader sees the old file or
the new one). While the stage's fit() runs, the driver reads that file every ``POLL_S`` and prints the new epochs'
lines above the bar; the workers print nothing, so each epoch appears once. Every figure of an epoch (each loss
term, per-attribute training accuracy, triplets per step, the learning rate) stays in the file.
"""

from __future__ import annotations

import json
from typing import Any

from rich.progress import Progress, TaskID

from fsnet.storage import Storage

POLL_S = 1.0  # a stage's epoch takes seconds (the demo) to minutes; a read per second costs nothing on S3 either


def epoch_line(m: dict[str, Any], epochs: int) -> str:
    """``stage 2 epoch 12/12: loss 7.9012, val Top-20 1.000, val accuracy 0.716``: within 80 columns."""
    parts = [f"loss {m['loss']:.4f}"]
    if m.get("val_top20") is not None:
        parts.append(f"val Top-20 {m['val_top20']:.3f}")
    if m.get("val_accuracy") is not None:
        parts.append(f"val accuracy {m['val_accuracy']:.3f}")
    return f"stage {m['stage']} epoch {m['epoch'] + 1}/{epochs}: {', '.join(parts)}"


def images_per_s(storage: Storage, url: str, stage: int) -> float | None:
    """The stage's median images/s over its epochs (the first pays for starting the data pipeline)."""
    if not storage.exists(url):
        return None
    rates = sorted(
        m["images_per_s"]
        for line in storage.read_text(url).splitlines()
        if line.strip() and (m := json.loads(line)).get("stage") == stage
    )
    return rates[len(rates) // 2] if rates else None


class EpochLines:
    """Follows one stage's epochs in the metrics file: ``poll()`` prints each new one and advances the bar."""

    def __init__(self, storage: Storage, url: str, stage: int, epochs: int, progress: Progress, task: TaskID):
        self.storage, self.url, self.stage, self.epochs = storage, url, stage, epochs
        self.progress, self.task = progress, task
        self.shown = {m["epoch"] for m in self._epochs()}  # a resumed stage's earlier epochs: done, not reprinted
        progress.update(task, completed=len(self.shown))

    def _epochs(self) -> list[dict[str, Any]]:
        if not self.storage.exists(self.url):
            return []
        found = []
        for line in self.storage.read_text(self.url).splitlines():
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                continue
            if m.get("stage") == self.stage:
                found.append(m)
        return found

    def poll(self) -> None:
        for m in self._epochs():
            if m["epoch"] not in self.shown:
                self.shown.add(m["epoch"])
                self.progress.console.print(epoch_line(m, self.epochs), highlight=False)
                self.progress.update(self.task, completed=len(self.shown))
