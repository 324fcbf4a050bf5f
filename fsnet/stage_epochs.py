"""``train.epochs_for_images``: the image stages' epochs as a number of steps, so that a small catalog trains as long
as the catalog its recipe was measured on.

A preset's epochs were chosen on one catalog's training split. A catalog with half its images gets half the steps
at the same epochs, and a cosine schedule anneals the rate to zero over them: its classifiers stop while their
validation accuracy still rises (docs/experiments.md). With
``epochs_for_images`` set, an image stage (the ones that train on decoded images or their cached maps; not stage 3,
which trains on fixed features) runs ``round(epochs x epochs_for_images / images)`` epochs on a training split of
fewer images, never fewer than its own ``epochs``: the same steps as on the reference catalog. A larger catalog keeps
the epochs as given. Decided at training, written into the run's config.yaml (docs/training.md).
"""

from __future__ import annotations

from fsnet.config import Config
from fsnet.model.training_plan import Stage


def scaled_epochs(epochs: int, images: int, reference: int | None) -> int:
    """``epochs`` for a training split of ``images``: as many steps as ``epochs`` on ``reference`` images, never fewer
    epochs than given; ``reference`` None: as given."""
    if reference is None or epochs == 0 or images >= reference:
        return epochs
    return max(epochs, round(epochs * reference / max(images, 1)))


def resolve_epochs(cfg: Config, stages: list[Stage], images: int) -> tuple[Config, str | None]:
    """``cfg`` with the epochs of ``stages``' image stages scaled for a training split of ``images``
    (train.epochs_for_images), and the line that says so (None when nothing changed)."""
    reference = cfg.train.epochs_for_images
    sections = [s.section for s in stages if s.data == "images" and s.section is not None]
    update, said = {}, []
    for section in sections:
        settings = getattr(cfg.train, section)
        epochs = scaled_epochs(settings.epochs, images, reference)
        if epochs != settings.epochs:
            update[section] = settings.model_copy(update={"epochs": epochs})
            said.append(f"{section} {settings.epochs} -> {epochs}")
    if not update:
        return cfg, None
    line = (
        f"train.epochs_for_images={reference:,}: {images:,} training images, so the image stages train as many "
        f"steps as on {reference:,}: epochs {', '.join(said)}"
    )
    return cfg.model_copy(update={"train": cfg.train.model_copy(update=update)}), line
