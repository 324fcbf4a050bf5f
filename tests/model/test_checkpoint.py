import pytest
import torch

from fsnet.config import load_config
from fsnet.errors import ModelError
from fsnet.model import build_model, load_model, save_model
from fsnet.model.checkpoint import model_bytes, model_from_bytes
from fsnet.model.memory import value_sums
from fsnet.storage import Storage
from tests.model.helpers import SCHEMA_5, model_config


def test_round_trip_on_storage(location):
    torch.manual_seed(0)
    model = build_model(model_config("model.variant=full_ff"), SCHEMA_5).eval()
    model.memory.set_means(
        *value_sums(torch.randn(30, 5, model.cfg.embed_dim), torch.randint(0, 2, (30, 5)), SCHEMA_5.num_values)
    )
    storage = Storage(load_config(sets=location.sets).storage)
    url = location.url("run/model.pt")
    save_model(model, url, storage)
    loaded = load_model(url, storage)
    assert loaded.schema == SCHEMA_5 and loaded.cfg == model.cfg and not loaded.training
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        a, b = model.embed(images), loaded.embed(images)
        torch.testing.assert_close(a.reps, b.reps)
        torch.testing.assert_close(a.boxes, b.boxes)
        manipulation = torch.tensor([[1, -1, -1, -1, -1]] * 3)
        torch.testing.assert_close(
            model.global_representation(a.reps, manipulation), loaded.global_representation(b.reps, manipulation)
        )


def test_loads_with_weights_only_and_rejects_other_files():
    data = model_bytes(build_model(model_config(), SCHEMA_5))
    torch.load(__import__("io").BytesIO(data), weights_only=True)  # plain containers and tensors only
    with pytest.raises(ModelError, match="not an fsnet model checkpoint"):
        model_from_bytes(b"not a checkpoint", origin="x/model.pt")
