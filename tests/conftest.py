"""Shared fixtures: tiny real components (random weights) in the style of diffusers' get_dummy_components."""

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from livo_core.principles import load_principles  # noqa: E402
from livo_core.shapes.base_model import ShapesModelConfig, assemble_pipeline  # noqa: E402
from tests.helpers.llm_server import ChatServer, running  # noqa: E402
from tests.helpers.rendered_pairs import write_rendered_pairs  # noqa: E402

TINY = ShapesModelConfig(text_hidden=32, text_layers=1, unet_channels=(32, 32, 32), vae_channels=(16, 16))


@pytest.fixture(scope="session")
def principles():
    return load_principles()


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory):
    """A complete StableDiffusionPipeline folder with tiny random weights."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_pipeline")
    assemble_pipeline(TINY).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def dataset(tiny_pipeline_dir, principles, tmp_path_factory):
    """A dataset folder of rendered preference pairs from the tiny pipeline, one per test module (some tests
    change its files)."""
    root = tmp_path_factory.mktemp("pairs")
    write_rendered_pairs(str(tiny_pipeline_dir), principles, root, 6)
    return root


@pytest.fixture
def server(monkeypatch):
    """A fake OpenAI-compatible server on 127.0.0.1 (scripted replies), stopped after the test."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with running(ChatServer()) as httpd:
        yield httpd


TINY_CLIP = "livo-test-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """(reference model, path of its weights as safetensors) for the registered tiny architecture."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip")
    (folder / f"{TINY_CLIP}.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(folder / f"{TINY_CLIP}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_CLIP).eval()
    weights = folder / "tiny_clip.safetensors"
    save_file(model.state_dict(), weights)
    return model, weights
