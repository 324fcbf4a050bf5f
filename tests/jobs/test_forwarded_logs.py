"""What the driver shows of the lines Ray's workers forward: fsnet's own lines and tracebacks, not Ray's internals."""

from jobs.ray_runtime import RAY_INTERNAL_LINE, _without_ray_lines

REPORT = (
    "Reporting training result 3: TrainingReport(checkpoint=None, metrics={'loss': 7.14, 'stage': 1, 'epoch': 2}, "
    "validation=False) from rank 1"
)
CPP = "[2026-11-29 15:44:03,465 E 9259 9259] core_worker.cc:2465: Actor with class name: 'MapWorker' has arguments"
OURS = "stage 1 epoch 2: loss 7.1410, 151 images/s, 0.0 triplets/step"


def test_ray_train_report_lines_and_cpp_logs_are_dropped_fsnet_lines_kept():
    assert RAY_INTERNAL_LINE.search(REPORT) and RAY_INTERNAL_LINE.search(CPP)
    assert not RAY_INTERNAL_LINE.search(OURS)
    assert not RAY_INTERNAL_LINE.search("Traceback (most recent call last):")
    shown = []
    _without_ray_lines(lambda data, *a, **k: shown.extend(data["lines"]))({"lines": [REPORT, OURS, CPP]})
    assert shown == [OURS]
