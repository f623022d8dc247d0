"""Precision: the frozen parts in the mixed precision's dtype ("no": fp32), the value encoder from the folder's fp32
weights, the reference and policy passes under one autocast, and the GradScaler state in every checkpoint."""

import pytest
import torch
from accelerate.state import AcceleratorState
from safetensors.torch import load_file

from livo_core.checkpoint import read_state, restore_training_state, save_checkpoint
from livo_core.training import Trainer
from tests.training.test_trainer import config


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    """accelerate keeps one mixed-precision setting per process: each test here sets its own."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_freezes_in_bf16_and_the_value_encoder_starts_from_fp32_weights(tiny_pipeline_dir, dataset, tmp_path):
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, mixed_precision="bf16", max_steps=1))
    assert trainer.base.unet.dtype == torch.bfloat16 and trainer.base.text_encoder.dtype == torch.bfloat16
    folder = load_file(tiny_pipeline_dir / "text_encoder" / "model.safetensors")
    encoder = trainer.accelerator.unwrap_model(trainer.value_encoder).text_model.state_dict()
    for name, tensor in folder.items():  # bit for bit: no round trip through the bf16 frozen copy
        assert encoder[name].dtype == torch.float32 and torch.equal(encoder[name], tensor.float()), name
    seen = []
    unet = trainer.base.unet.forward

    def record(sample, *args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return unet(sample, *args, **kwargs)

    trainer.base.unet.forward = record
    trainer.fit()
    assert seen == [True, True]  # the reference pass and the policy pass, both under the autocast


def test_no_mixed_precision_is_fp32_everywhere(tiny_pipeline_dir, dataset, tmp_path):
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, mixed_precision="no", max_steps=1))
    assert trainer.frozen_dtype() == torch.float32
    assert {
        p.dtype for part in (trainer.base.unet, trainer.base.vae, trainer.base.text_encoder) for p in part.parameters()
    } == {torch.float32}


def test_the_grad_scaler_state_is_checkpointed_and_restored(tiny_pipeline_dir, dataset, tmp_path):
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "run", max_steps=1))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)
    scaler.scale(torch.ones(1))  # the scale exists once a loss was scaled
    scaler.update(new_scale=1024.0)
    path = save_checkpoint(
        tmp_path / "ckpt",
        5,
        trainer.accelerator.unwrap_model(trainer.value_encoder),
        trainer.optimizer,
        trainer.scheduler,
        trainer.config.model_dump(mode="json"),
        grad_scaler=scaler,
    )
    assert read_state(path)["grad_scaler"]["scale"] == 1024.0
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=3)
    assert restore_training_state(path, trainer.optimizer, trainer.scheduler, fresh) == 5
    assert fresh.get_scale() == 1024.0 and fresh.state_dict() == scaler.state_dict()
