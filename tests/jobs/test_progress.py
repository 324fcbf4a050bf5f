"""The bars of long steps (jobs/progress.py): a Ray Data pipeline run in this process advances its bar by the rows
the named operator made, through the execution callback fsnet registers when it starts Ray."""

import numpy as np
import pytest
import ray.data
from rich.progress import Progress

from jobs.progress import rows_of

pytestmark = pytest.mark.usefixtures("ray_cluster")


class Doubled:
    """A stand-in for EmbedImages: a callable class mapped over batches on an actor pool."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"id": batch["id"] * 2}


def pipeline(rows: int) -> "ray.data.Dataset":
    return ray.data.range(rows, override_num_blocks=8).map_batches(
        Doubled, batch_size=100, compute=ray.data.ActorPoolStrategy(size=1)
    )


def test_a_pipeline_advances_its_bar_by_the_rows_its_operator_made_and_only_within_the_block():
    progress = Progress(disable=True)
    task = progress.add_task("embed", total=1000)
    with rows_of(progress, task, "Doubled"):
        assert len(pipeline(1000).take_all()) == 1000
    assert progress.tasks[0].completed == 1000
    assert len(pipeline(300).take_all()) == 300  # after the block: the bar is left alone
    assert progress.tasks[0].completed == 1000


def test_the_driver_prints_each_epoch_of_its_stage_once_and_a_resumed_stages_earlier_epochs_not_again(tmp_path):
    import io
    import json

    from rich.console import Console

    from fsnet.config import load_config
    from fsnet.storage import Storage
    from jobs.epoch_progress import EpochLines

    storage, url = Storage(load_config().storage), str(tmp_path / "train_metrics.jsonl")

    def epoch(stage: int, n: int) -> str:
        figures = {"loss": 2.0 - n / 10, "images_per_s": 900.0, "val_accuracy": 0.5}
        return json.dumps({"stage": stage, "epoch": n, **figures})

    storage.write_text(url, epoch(1, 0) + "\n" + epoch(2, 0) + "\n")  # a stage 2 resumed after its first epoch
    out = io.StringIO()
    progress = Progress(console=Console(file=out, width=80), disable=True)
    task = progress.add_task("stage 2", total=3)
    lines = EpochLines(storage, url, 2, 3, progress, task)
    assert progress.tasks[0].completed == 1 and out.getvalue() == ""
    storage.write_text(url, storage.read_text(url) + epoch(2, 1) + "\n" + '{"stage": 2, "ep')  # a line being written
    lines.poll()
    lines.poll()
    assert out.getvalue() == "stage 2 epoch 2/3: loss 1.9000, val accuracy 0.500\n"
    assert progress.tasks[0].completed == 2
