"""train.epochs_for_images (fsnet/stage_epochs.py): a smaller training split trains more epochs of its image stages,
the same steps; a larger one and stage 3 keep their epochs."""

import pytest

from fsnet.config import load_config
from fsnet.model import model_class
from fsnet.stage_epochs import resolve_epochs, scaled_epochs


@pytest.mark.parametrize(
    "epochs, images, reference, scaled",
    [
        (4, 16_000, 16_000, 4),
        (4, 15_936, 16_000, 4),  # fashion-product-small's split: the epochs as measured
        (4, 6_947, 16_000, 9),  # a catalog of 11,000 photos: as many steps as 4 epochs of 16,000
        (6, 6_947, 16_000, 14),
        (4, 40_000, 16_000, 4),  # a larger catalog: never fewer epochs than given
        (4, 6_947, None, 4),
        (0, 100, 16_000, 0),  # a stage switched off stays off
    ],
)
def test_the_same_steps_on_a_smaller_split(epochs, images, reference, scaled):
    assert scaled_epochs(epochs, images, reference) == scaled


def test_the_image_stages_are_scaled_and_said_stage3_is_not():
    cfg = load_config(["cpu_mobilenet96"], ["train.epochs_for_images=16000"])
    plan = model_class(cfg.model.kind).training_plan(cfg.model)
    scaled, said = resolve_epochs(cfg, plan, 6_947)
    epochs = [getattr(scaled.train, s).epochs for s in ("stage1", "stage2", "stage3")]
    assert epochs == [9, 14, cfg.train.stage3.epochs]
    assert said == (
        "train.epochs_for_images=16,000: 6,947 training images, so the image stages train as many steps as on "
        "16,000: epochs stage1 4 -> 9, stage2 6 -> 14"
    )
    same, said = resolve_epochs(cfg, plan, 20_000)
    assert same is cfg and said is None


def test_the_adde_models_image_stages_too():
    cfg = load_config(["tiny"], ["model.kind=adde", "train.epochs_for_images=1000"])
    plan = model_class(cfg.model.kind).training_plan(cfg.model)
    scaled, _ = resolve_epochs(cfg, plan, 500)
    assert scaled.train.stage1.epochs == 2 * cfg.train.stage1.epochs
    assert scaled.train.adde.epochs == 2 * cfg.train.adde.epochs
