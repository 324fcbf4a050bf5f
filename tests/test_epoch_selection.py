"""The epoch a stage keeps: the best validation figure, ties broken by classifier accuracy, then the later epoch."""

from fsnet.epoch_selection import better_epoch


def test_the_better_metric_wins_whatever_the_accuracy():
    assert better_epoch({"val_top20": 0.9, "val_accuracy": 0.5}, {"val_top20": 0.8, "val_accuracy": 0.9}, "val_top20")
    assert not better_epoch(
        {"val_top20": 0.8, "val_accuracy": 0.9}, {"val_top20": 0.9, "val_accuracy": 0.5}, "val_top20"
    )


def test_a_saturated_metric_is_decided_by_the_classifiers_then_by_the_later_epoch():
    kept = {"val_top20": 1.0, "val_accuracy": 0.70}
    assert better_epoch({"val_top20": 1.0, "val_accuracy": 0.72}, kept, "val_top20")
    assert not better_epoch({"val_top20": 1.0, "val_accuracy": 0.69}, kept, "val_top20")
    assert better_epoch(dict(kept), kept, "val_top20")  # a tie on both: the later epoch


def test_the_first_scored_epoch_is_kept_and_an_unscored_one_never():
    assert better_epoch({"val_accuracy": 0.3}, None, "val_accuracy")
    assert not better_epoch({"val_accuracy": 0.9}, None, "val_top20")
    assert better_epoch({"val_top20": 0.5}, {"val_top20": 0.5, "val_accuracy": 0.9}, "val_top20") is False
