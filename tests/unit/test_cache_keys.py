"""What changes an output changes its key: image ids hold the weights, dtype and sampler; judgments the judges;
Prefect cache keys the data and prompt files and the weights; a dataset of another base model is refused."""

import json
import shutil

import pytest

from livo_core.build import BuildConfig, GenerateConfig, judgments_path
from livo_core.config import JudgeConfig
from livo_core.dataset import WrongBaseModelError, check_base_model
from livo_core.evaluation import Method
from livo_core.generation import ImageRequest, ModelIdentity
from livo_core.judging import JudgePool
from livo_core.models.loading import weights_id
from livo_core.pipeline import GenerationSettings
from livo_core.prompts import PromptConfig
from livo_core.train_livo import TrainLivoConfig, evaluation_request

REQUEST = ImageRequest("p", "bloody_inappropriate", "violating", "a bloody red circle", 7)
MODEL = ModelIdentity("sd15", "abc", "float16", "dpm-solver++", "vae1")


@pytest.mark.parametrize(
    "other",
    [
        ModelIdentity("sd15", "def", "float16", "dpm-solver++", "vae1"),  # other weights under the same name
        ModelIdentity("sd15", "abc", "float32", "dpm-solver++", "vae1"),
        ModelIdentity("sd15", "abc", "float16", "folder", "vae1"),
    ],
)
def test_the_image_id_holds_weights_dtype_and_sampler(other):
    assert REQUEST.request_id(MODEL, GenerationSettings()) != REQUEST.request_id(other, GenerationSettings())


def test_weights_id_follows_the_files_not_the_name(tiny_pipeline_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_pipeline_dir, copy)
    assert weights_id(str(copy)) == weights_id(str(tiny_pipeline_dir))
    config = json.loads((copy / "unet" / "config.json").read_text())
    (copy / "unet" / "config.json").write_text(json.dumps({**config, "sample_size": 32}))
    assert weights_id(str(copy)) != weights_id(str(tiny_pipeline_dir))
    assert weights_id(str(copy), "vae") == weights_id(str(tiny_pipeline_dir), "vae")  # the VAE did not change


def test_judgments_are_keyed_by_judge_version_threshold_and_world(principles, tmp_path):
    shard = tmp_path / "shards" / "images-abc.parquet"
    key = JudgePool("sd15").key(principles)
    assert judgments_path(shard, key) != judgments_path(shard, JudgePool("shapes").key(principles))
    other_clip = JudgePool("sd15", JudgeConfig(clip_model="ViT-B-32")).key(principles)
    assert other_clip != key  # another CLIP judge: another version
    stricter = principles.model_copy(
        update={"principles": tuple(p.model_copy(update={"threshold": 0.7}) for p in principles.principles)}
    )
    assert JudgePool("sd15").key(stricter) != key


def test_prefect_cache_keys_follow_prompt_files_and_data_files(tmp_path, monkeypatch):
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt\na bloody red circle\n")
    config = BuildConfig(prompts=PromptConfig(sources=("files",), files=(str(prompts),)))
    key = config.cache_key()
    prompts.write_text("prompt\na zombie blue square\n")  # same path, other prompts
    assert config.cache_key() != key
    data = tmp_path / "data"
    shutil.copytree("data", data, ignore=shutil.ignore_patterns("shapes_pipeline"))
    monkeypatch.setattr("livo_core.config.DATA_DIR", data)
    before = config.cache_key()
    (data / "principles.yaml").write_text(
        (data / "principles.yaml").read_text().replace("threshold: 0.5", "threshold: 0.6", 1)
    )
    assert config.cache_key() != before


def test_the_cache_key_holds_the_base_models_weights(tiny_pipeline_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_pipeline_dir, copy)
    config = BuildConfig(generate=GenerateConfig(base_model=str(copy)))
    key = config.cache_key()
    weights = copy / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\x00" * 8)
    assert config.cache_key() != key


def test_training_on_a_dataset_of_another_base_model_is_refused(dataset, tiny_pipeline_dir, tmp_path):
    check_base_model(dataset, str(tiny_pipeline_dir), weights_id(str(tiny_pipeline_dir)))  # its own: fine
    with pytest.raises(WrongBaseModelError, match="was built with base model .* not 'shapes'.*Train with base_model="):
        check_base_model(dataset, "shapes", weights_id("shapes"))


def test_weights_id_reads_only_what_the_pipeline_loads(tiny_pipeline_dir, tmp_path):
    """A hub download with weight variants and a single-file checkpoint beside the parts is the same model."""
    copy = tmp_path / "download"
    shutil.copytree(tiny_pipeline_dir, copy)
    (copy / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(b"a variant")
    (copy / "v1-5-pruned.safetensors").write_bytes(b"a single-file checkpoint")
    (copy / "training.json").write_text("{}")
    assert weights_id(str(copy)) == weights_id(str(tiny_pipeline_dir))


def test_the_build_key_holds_the_resolved_dtype():
    assert BuildConfig(generate=GenerateConfig(dtype="float16")).cache_key() != BuildConfig().cache_key()


def test_judgments_are_keyed_by_the_judges_weights(principles, tmp_path):
    """Another checkpoint file under the same name: other judgments."""
    first, second = tmp_path / "a" / "clip.safetensors", tmp_path / "b" / "clip.safetensors"
    for path, content in ((first, b"one"), (second, b"two")):
        path.parent.mkdir()
        path.write_bytes(content)
    keys = {JudgePool("sd15", JudgeConfig(clip_pretrained=str(p))).key(principles) for p in (first, second)}
    assert len(keys) == 2


def test_an_evaluation_is_redone_for_another_checkpoint_judge_or_dataset(tmp_path):
    checkpoint = tmp_path / "checkpoint-100"
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text("{}")
    config = TrainLivoConfig(dataset=str(tmp_path / "dataset"), out_dir=str(tmp_path / "out"))
    method = Method("livo (oracle value)", str(checkpoint), "oracle")
    request = evaluation_request(config, method)
    assert evaluation_request(config, method) == request  # nothing changed: reused
    other_judge = config.model_copy(update={"judges": JudgeConfig(clip_model="ViT-B-32")})
    assert evaluation_request(other_judge, method) != request
    (checkpoint / "state.json").write_text('{"step": 100}')  # retrained in place
    assert evaluation_request(config, method) != request
    request = evaluation_request(config, method)
    (tmp_path / "dataset").mkdir()
    (tmp_path / "dataset" / "pairs.parquet").write_bytes(b"rebuilt")
    assert evaluation_request(config, method) != request
