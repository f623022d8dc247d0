import json
import signal
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from livo_core.checkpoint import latest_checkpoint, list_checkpoints, read_state
from livo_core.config import TrainConfig
from livo_core.models.loading import load_base_pipeline, weights_id
from livo_core.training import NonFiniteLossError, PairSampler, Trainer
from tests.helpers.float_noise import livo_loss_atol, record_errors


def config(tiny_pipeline_dir, dataset, out, **overrides):
    values = dict(
        base_model=str(tiny_pipeline_dir),
        dataset=str(dataset),
        output_dir=str(out),
        learning_rate=1e-3,
        batch_size=4,
        max_steps=4,
        checkpoint_every=2,
        validate_every=1000,
        log_every=1,
        validation_principle=None,
        num_threads=1,
    )
    return TrainConfig(**(values | overrides))


def weights(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict, atol: float = 0.0) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=atol, rtol=0) for k in a)


def test_only_the_value_encoder_changes(tiny_pipeline_dir, dataset, tmp_path):
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, max_steps=3))
    frozen = {name: weights(getattr(trainer.base, name)) for name in ("unet", "vae", "text_encoder")}
    before = weights(trainer.value_encoder)
    trainer.fit()
    for name, state in frozen.items():
        assert same(weights(getattr(trainer.base, name)), state), f"{name} changed"
    assert not same(weights(trainer.value_encoder), before)
    log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert {"loss", "margin_w", "margin_l", "hinge_active", "implicit_acc"} <= log[0].keys()


def test_resume_equals_uninterrupted_run(tiny_pipeline_dir, dataset, tmp_path):
    full = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "full"))
    full.fit()
    first = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "cut", max_steps=2))
    first.fit()
    resumed = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "cut"))
    assert resumed.step == 2
    resumed.fit()
    assert same(weights(resumed.value_encoder), weights(full.value_encoder), atol=1e-6)
    logs = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("full", "cut")]
    assert [r["step"] for r in logs[1]] == [1, 2, 3, 4]
    assert logs[1][2]["loss"] == pytest.approx(logs[0][2]["loss"], rel=1e-5)  # the next-step loss after resume


def test_gradient_accumulation_equals_a_larger_batch(tiny_pipeline_dir, dataset, tmp_path):
    big = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "big", batch_size=4, grad_accumulation=1, max_steps=2))
    initial = weights(big.value_encoder)
    errors = record_errors(big)
    big.fit()
    small = Trainer(
        config(tiny_pipeline_dir, dataset, tmp_path / "small", batch_size=1, grad_accumulation=4, max_steps=2)
    )
    small.fit()
    logs = [
        [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("big", "small")
    ]
    c = big.config
    for a, b in zip(*logs, strict=True):
        # beta and alpha scale the float32 rounding of the UNet's errors: about 8e-4 here, while training on the last
        # micro-batch alone moves the second loss by 3e-3 and a 2-1-1-0 weighting by 1.5e-2
        atol = livo_loss_atol(c.beta, c.alpha, max(errors), a["loss"], terms=small.config.grad_accumulation)
        assert b["loss"] == pytest.approx(a["loss"], rel=0, abs=atol)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)  # float32 noise: < 1e-6 relative
    # Adam turns float noise in (theoretically) zero gradients, such as attention key biases, into updates of up to
    # lr; so compare the whole update: the two runs' weights differ by < 1% of how far training moved them.
    w_small, w_big = weights(small.value_encoder), weights(big.value_encoder)
    moved = sum((w_big[k] - initial[k]).pow(2).sum() for k in initial).sqrt()
    apart = sum((w_small[k] - w_big[k]).pow(2).sum() for k in initial).sqrt()
    assert moved > 0 and apart < 0.01 * moved


def test_dpo_loss_trains(tiny_pipeline_dir, dataset, tmp_path):
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, loss="dpo", max_steps=2))
    before = weights(trainer.value_encoder)
    trainer.fit()
    assert not same(weights(trainer.value_encoder), before)


def test_resume_with_another_config_is_refused(tiny_pipeline_dir, dataset, tmp_path):
    Trainer(config(tiny_pipeline_dir, dataset, tmp_path, max_steps=2)).fit()
    with pytest.raises(ValueError, match="learning_rate"):
        Trainer(config(tiny_pipeline_dir, dataset, tmp_path, learning_rate=5e-4))


def test_validation_grid_is_written(tiny_pipeline_dir, dataset, tmp_path):
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, validation_principle="gender_equality"))
    path = trainer.validate(seeds=(0, 1))
    assert path.is_file() and path.stat().st_size > 0


def test_missing_latents_are_encoded_once(tiny_pipeline_dir, dataset, tmp_path):
    import shutil

    from livo_core.training import PairDataset

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    shutil.rmtree(copy / "latents")
    base, vae_id = load_base_pipeline(str(tiny_pipeline_dir), device="cpu"), weights_id(str(tiny_pipeline_dir), "vae")
    recomputed = PairDataset(copy, base.vae, vae_id)
    original = PairDataset(dataset, base.vae, vae_id)
    assert recomputed.shas.equals(original.shas)
    assert torch.allclose(  # other batch sizes, other kernels
        torch.tensor(recomputed.latents[:]), torch.tensor(original.latents[:]), atol=1e-4
    )
    assert len(list((copy / "latents").rglob("*.safetensors"))) == len(
        list((dataset / "latents").rglob("*.safetensors"))
    )


_KILLED_RUN = """
import os, signal, sys
from livo_core.config import TrainConfig
from livo_core.training import NonFiniteLossError, PairSampler, Trainer

def die_after_step_3(record):
    if record["step"] == 3:  # after the step-2 checkpoint, before the step-4 one
        os.kill(os.getpid(), signal.SIGKILL)

Trainer(TrainConfig.model_validate_json(sys.argv[1])).fit(die_after_step_3)
"""


def test_kill_9_mid_training_then_rerun_equals_uninterrupted_run(tiny_pipeline_dir, dataset, tmp_path):
    full = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "full", max_steps=6))
    full.fit()
    cut = config(tiny_pipeline_dir, dataset, tmp_path / "cut", max_steps=6)
    killed = subprocess.run([sys.executable, "-c", _KILLED_RUN, cut.model_dump_json()], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    assert read_state(latest_checkpoint(tmp_path / "cut"))["step"] == 2

    rerun = Trainer(cut)
    assert rerun.step == 2  # the step count goes on from the last checkpoint
    rerun.fit()
    assert same(weights(rerun.value_encoder), weights(full.value_encoder), atol=1e-6)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]  # the killed run's step-3 record was dropped, nothing logged twice


def test_nan_loss_stops_with_the_last_good_checkpoint(tiny_pipeline_dir, dataset, tmp_path, monkeypatch):
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, max_steps=6))
    real = trainer.losses

    def nan_at_step_4(batch):
        output = real(batch)
        return replace(output, loss=output.loss * float("nan")) if trainer.step == 3 else output

    monkeypatch.setattr(trainer, "losses", nan_at_step_4)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 4.*checkpoint-0000002.*learning_rate"):
        trainer.fit()
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0000002"]
    resumed = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, max_steps=6))
    assert resumed.step == 2


def test_balanced_sampler_gives_every_principle_the_same_share():
    groups = ["gender"] * 12 + ["blood"] * 3 + ["horror"] * 3
    sampler = PairSampler(groups, global_batch=6, seed=0)
    for step in range(10):
        drawn = [groups[i] for i in sampler.step_indices(step)]
        assert sorted(drawn) == ["blood", "blood", "gender", "gender", "horror", "horror"]
    assert sampler.step_indices(7) == PairSampler(groups, 6, 0).step_indices(7)  # a function of (seed, step)
    epoch = [i for step in range(3) for i in PairSampler(groups, 6, 0, balance=False).step_indices(step)]
    assert sorted(epoch) == list(range(18))  # unbalanced: one permutation of all pairs per epoch
