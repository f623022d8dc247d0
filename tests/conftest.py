"""Shared fixtures: tiny real components (random weights) in the style of diffusers' get_dummy_components."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from livo_core.principles import load_principles  # noqa: E402
from livo_core.shapes.base_model import ShapesModelConfig, assemble_pipeline  # noqa: E402
from tests.helpers.llm_server import ChatServer, running  # noqa: E402

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


@pytest.fixture
def server(monkeypatch):
    """A fake OpenAI-compatible server on 127.0.0.1 (scripted replies), stopped after the test."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with running(ChatServer()) as httpd:
        yield httpd
