"""Speed options change how the frozen UNet runs, never what a step computes; latents are memory-mapped."""

import numpy as np
import pytest
import torch

from livo_core.models.loading import load_base_pipeline, tune_unet, weights_id
from livo_core.storage import LatentCache
from livo_core.training import PairDataset, Trainer
from tests.training.test_trainer import config


@pytest.fixture(scope="module")
def vae_and_id(tiny_pipeline_dir):
    return load_base_pipeline(str(tiny_pipeline_dir), device="cpu").vae, weights_id(str(tiny_pipeline_dir), "vae")


def test_latents_are_read_from_a_memory_mapped_pack(dataset, vae_and_id):
    vae, vae_id = vae_and_id
    pairs = PairDataset(dataset, vae, vae_id)
    shas = pairs.shas.to_pylist()
    assert isinstance(pairs.latents, np.memmap) and pairs.latents.shape[0] == len(shas) == len(set(shas))
    pack = LatentCache(dataset, vae_id).pack_path(shas)
    assert ".packs" in pack.parts  # a dot-folder: a mirror never uploads the derived pack
    written = pack.stat().st_mtime_ns
    batch = pairs.collate([2, 0], [0, 1])
    cache = LatentCache(dataset, vae_id)
    for k, i in enumerate([2, 0]):
        assert batch.prompts[k] == pairs.prompts[i].as_py()
        assert torch.equal(batch.latents_w[k], cache.load(shas[pairs.index_w[i]]))
        assert torch.equal(batch.latents_l[k], cache.load(shas[pairs.index_l[i]]))
    assert not torch.equal(batch.latents_w, batch.latents_l)
    PairDataset(dataset, vae, vae_id)
    assert pack.stat().st_mtime_ns == written  # packed once


def test_a_latent_of_another_shape_is_named(dataset, vae_and_id, tmp_path):
    vae, vae_id = vae_and_id
    cache = LatentCache(tmp_path, vae_id)
    from safetensors.torch import save_file

    for sha, shape in (("aa" * 32, (4, 8, 8)), ("bb" * 32, (4, 4, 4))):
        cache.path(sha).parent.mkdir(parents=True, exist_ok=True)
        save_file({"latent": torch.zeros(shape)}, str(cache.path(sha)))
    with pytest.raises(ValueError, match=r"bbbb.*shape \(4, 4, 4\).*re-encode"):
        cache.pack(["aa" * 32, "bb" * 32])
    assert not cache.pack_path(["aa" * 32, "bb" * 32]).exists()  # no partial pack left behind


def test_images_source_encodes_the_pngs_into_the_cached_latents(dataset, vae_and_id):
    vae, vae_id = vae_and_id
    cached = PairDataset(dataset, vae, vae_id).collate([0, 1, 2], [0, 1, 2])
    encoded = PairDataset(dataset, vae, vae_id, latent_source="images")
    assert encoded.latents is None
    batch = encoded.collate([0, 1, 2], [0, 1, 2])
    assert torch.allclose(batch.latents_w, cached.latents_w, atol=1e-4)
    assert torch.allclose(batch.latents_l, cached.latents_l, atol=1e-4)


def _step(trainer: Trainer) -> tuple[float, dict[str, torch.Tensor]]:
    diagnostics = trainer._accumulate()
    grads = {n: p.grad.clone() for n, p in trainer.value_encoder.named_parameters() if p.grad is not None}
    return diagnostics["loss"], grads


@pytest.mark.parametrize(
    "options",
    [
        {"unet_calls": 1},
        {"gradient_checkpointing": True},
        {"channels_last": True},
        {"latent_source": "images"},
    ],
    ids=lambda o: next(iter(o)),
)
def test_speed_options_give_the_same_loss_and_gradient(tiny_pipeline_dir, dataset, tmp_path, options):
    loss, grads = _step(Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "plain")))
    tuned_loss, tuned_grads = _step(Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "tuned", **options)))
    assert grads and grads.keys() == tuned_grads.keys()
    assert tuned_loss == pytest.approx(loss, rel=1e-4)
    scale = max(g.abs().max() for g in grads.values())
    assert scale > 0
    for name, grad in grads.items():
        assert torch.allclose(tuned_grads[name], grad, atol=1e-4 * scale, rtol=1e-3), name


def test_gradient_checkpointing_recomputes_in_the_backward(tiny_pipeline_dir, dataset, tmp_path):
    def forward_calls(trainer: Trainer) -> int:
        calls = []
        block = trainer.base.unet.mid_block.resnets[1]  # after a cross-attention: on the value's gradient path
        forward = block.forward
        block.forward = lambda *args, **kwargs: calls.append(1) or forward(*args, **kwargs)  # hooks skip recomputes
        trainer._accumulate()
        return len(calls)

    plain = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "plain"))
    checkpointed = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "ckpt", gradient_checkpointing=True))
    batches = len(plain.micro_batches())
    assert forward_calls(plain) == 2 * batches  # reference, policy
    assert forward_calls(checkpointed) == 3 * batches  # and the policy's once more, in the backward


def test_tune_unet_compiles_the_same_weights_with_static_shapes(tiny_pipeline_dir):
    unet = load_base_pipeline(str(tiny_pipeline_dir), device="cpu").unet
    compiled = tune_unet(unet, channels_last=True, compile_unet=True)  # compiles lazily, on its first call
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule) and compiled._orig_mod is unet
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_build_generator_applies_its_speed_options(tiny_pipeline_dir):
    from livo_core.build import GenerateConfig, _pipeline

    plain = _pipeline(GenerateConfig(base_model=str(tiny_pipeline_dir)))
    assert not plain.base.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert _pipeline(GenerateConfig(base_model=str(tiny_pipeline_dir), seed=7)) is plain  # same model: not reloaded
    tuned = _pipeline(GenerateConfig(base_model=str(tiny_pipeline_dir), channels_last=True))
    assert tuned is not plain and tuned.base.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
