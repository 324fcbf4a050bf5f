"""The embed actors' call on JPEG bytes (fsnet/embedding.py, no Ray: the callable class itself): its channels-last
model and folded trunk pass give what the saved model's own ``embed`` gives on the same decoded images; for the tiny
backbone and MobileNetV2 with tuned blocks, batch norm statistics set away from identity so that folding matters."""

import numpy as np
import pytest
import torch

from fsnet.config import load_config
from fsnet.decode import decode_batch
from fsnet.embedding import EmbedImages
from fsnet.model import build_model, save_model
from fsnet.storage import Storage
from tests.images import GARBAGE, image_bytes
from tests.model.helpers import SCHEMA_3

SIZE = 64


def saved_model(backbone: str, url: str, storage: Storage):
    cfg = load_config(["tiny"], [f"model.backbone={backbone}", "model.weights=none", "model.variant=full"])
    torch.manual_seed(0)
    model = build_model(cfg.model, SCHEMA_3, pretrained=False)
    if backbone == "mobilenet_v2":
        model.backbone.set_tuned_blocks(2)
    generator = torch.Generator().manual_seed(1)
    for norm in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.copy_(torch.randn(norm.num_features, generator=generator) * 0.1)
        norm.running_var.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
        norm.weight.data.copy_(torch.rand(norm.num_features, generator=generator) + 0.5)
    save_model(model, url, storage)
    return model.eval()


@pytest.mark.parametrize("backbone", ["tiny", "mobilenet_v2"])
def test_embedding_images_is_the_models_own_embed(backbone, tmp_path):
    storage = Storage(load_config(["tiny"]).storage)
    url = str(tmp_path / "model.pt")
    model = saved_model(backbone, url, storage)
    blobs = [image_bytes(60, 80, seed=i) for i in range(5)] + [GARBAGE]
    batch = {"id": np.array([f"img{i}" for i in range(6)], dtype=object), "image": np.array(blobs, dtype=object)}

    table = EmbedImages(url, storage, SIZE, device="cpu")(batch)

    assert table["error"].to_pylist()[:5] == [None] * 5 and table["error"][5].as_py()  # the bad one listed
    with torch.inference_mode():
        emb = model.embed(decode_batch(blobs[:5], SIZE))
        expected = {
            "reps": emb.reps,
            "probabilities": emb.probabilities,
            "global": model.global_representation(emb.reps),
        }
    for column, want in expected.items():
        got = np.stack(table[column].to_pylist()[:5]).reshape(want.shape)
        assert np.allclose(got, want.numpy(), rtol=1e-4, atol=1e-4 * float(want.abs().max())), column
    predicted = np.stack(table["predicted"].to_pylist()[:5])
    assert (predicted == emb.predicted.numpy()).all()
