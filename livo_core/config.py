"""Typed, frozen configs, one per stage; each can fingerprint itself for cache keys and provenance."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from livo_core.principles import DATA_DIR, Principle, load_principles

World = Literal["shapes", "sd15"]  # the judge sets of principles.yaml
PROMPT_FILE_SUFFIXES = (".csv", ".jsonl", ".parquet")
_HUB_ID = re.compile(r"\w[\w.-]*/\w[\w.-]*")


def _check_base_model(value: str) -> str:
    """A profile name, an existing folder or something shaped like a hub id ("org/name")."""
    from livo_core.models.loading import PROFILES  # noqa: PLC0415 (pulls in torch)

    if value in PROFILES or Path(value).is_dir() or _HUB_ID.fullmatch(value):
        return value
    raise ValueError(
        f"unknown base model {value!r}: use a profile ({', '.join(PROFILES)}), an existing pipeline folder "
        "or a Hugging Face hub id such as 'org/name'"
    )


def _check_shares(value: tuple[float, ...]) -> tuple[float, ...]:
    if any(share < 0 for share in value) or not math.isclose(sum(value), 1.0, abs_tol=1e-6):
        raise ValueError(f"shares must be >= 0 and sum to 1, got {list(value)} (sum {sum(value):g})")
    return value


def check_prompt_files(files: Sequence[str]) -> None:
    """Prompt files must be CSV, JSONL or Parquet (by suffix); whether they exist is checked when they are read."""
    bad = [f for f in files if Path(f).suffix.lower() not in PROMPT_FILE_SUFFIXES]
    if bad:
        raise ValueError(f"prompt files must end in {', '.join(PROMPT_FILE_SUFFIXES)}, not {bad}")


def files_fingerprint(paths: Sequence[str | Path]) -> str:
    """A short hash of each file's path and contents ("missing" for a file that is not there, such as a URL)."""
    digest = hashlib.sha256()
    for path in paths:
        path = Path(path)
        digest.update(str(path).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest() if path.is_file() else b"missing")
    return digest.hexdigest()[:16]


BaseModelName = Annotated[str, AfterValidator(_check_base_model)]
Shares = Annotated[tuple[float, float, float], AfterValidator(_check_shares)]  # train/val/test


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        """An unknown key (a typo like `max_step`) is an error that suggests the closest field."""
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields:
                    close = difflib.get_close_matches(str(key), cls.model_fields, n=1)
                    hint = f"did you mean {close[0]!r}?" if close else f"fields: {', '.join(cls.model_fields)}"
                    raise ValueError(f"unknown field {key!r} of {cls.__name__}; {hint}")
        return data

    def fingerprint(self) -> str:
        """A short hash of every field, stable across runs."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]

    def input_files(self) -> tuple[str, ...]:
        """Files the config names whose contents change the output (prompt files); none by default."""
        return ()

    def files_fingerprint(self) -> str:
        """A hash of the contents of the shipped data files (principles, templates, word lists, the learned
        retriever's weights; the shapes pipeline's weights are keyed by `weights_id`) and of
        `input_files()`: cache keys change when a file does, not only when a field does."""
        shipped = [*sorted(DATA_DIR.rglob("*.yaml")), *sorted(DATA_DIR.rglob("*.safetensors"))]
        return files_fingerprint([*shipped, *self.input_files()])

    def cache_key(self) -> str:
        """What a stage's cached result depends on beyond its inputs: every field, the data and prompt files."""
        return f"{self.fingerprint()}-{self.files_fingerprint()}"


class JudgeConfig(_Config):
    """The models behind the real world's judges (the shapes world's judges are pixel rules)."""

    clip_model: str = Field("ViT-L-14", description="open_clip architecture of the CLIP race judge (the reference's)")
    clip_pretrained: str = Field("openai", description="its weights: an open_clip tag or a local checkpoint file")
    vlm_model: str | None = Field(
        None, description="the VLM judge's model at LIVO_VLM_BASE_URL (None: LIVO_VLM_MODEL, else the default)"
    )

    def options(self) -> dict[str, dict]:
        """Constructor arguments per judge name (JUDGES)."""
        return {
            "clip": {"model_name": self.clip_model, "pretrained": self.clip_pretrained},
            "vlm": {"model": self.vlm_model},
        }


class TrainRecipe(_Config):
    """How the value encoder is trained (loss scales, optimisation, bookkeeping), whatever the data and model."""

    # loss
    beta: float = Field(1000.0, description="LiVO winner-term scale")
    alpha: float = Field(500.0, description="LiVO loser-term scale")
    gamma1: float = Field(1.0, description="LiVO winner margin")
    gamma2: float = Field(0.5, description="LiVO loser margin")
    dpo_beta: float = Field(2500.0, description="Diffusion-DPO KL scale")
    # optimisation
    learning_rate: float = Field(1e-6, gt=0, description="AdamW learning rate (constant after warm-up)")
    warmup_steps: int = Field(0, ge=0, description="linear warm-up, optimizer steps")
    weight_decay: float = Field(0.01, ge=0)
    adam_betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    batch_size: int = Field(8, ge=1, description="pairs per micro-batch")
    balance_principles: bool = Field(
        True, description="draw every principle's pairs equally often (datasets are skewed toward bias pairs)"
    )
    grad_accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step")
    max_steps: int = Field(15000, ge=1, description="optimizer steps")
    max_minutes: float | None = Field(None, gt=0, description="stop (with a checkpoint) after this wall time")
    max_grad_norm: float = Field(1.0, gt=0)
    mixed_precision: Literal["auto", "no", "fp16", "bf16"] = Field("auto", description="auto: bf16 on GPU, none on CPU")
    seed: int = 0
    # bookkeeping
    checkpoint_every: int = Field(1000, ge=1, description="optimizer steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="newest checkpoints kept on disk")
    validate_every: int = Field(1000, ge=1, description="optimizer steps between validation grids")
    log_every: int = Field(10, ge=1)
    log_with: Literal["none", "tensorboard", "wandb"] = Field(
        "none",
        description="tracker that also gets metrics.jsonl's metrics: tensorboard (files under output_dir/livo), "
        "wandb (WANDB_MODE=offline for no network), none",
    )
    validation_prompts: tuple[str, ...] = Field(("a photo of a doctor",), description="prompts of the validation grid")
    validation_principle: str | None = Field("gender_equality", description="principle id applied in the grid")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    # speed: how the frozen UNet runs, not what a step computes (bench/gpu.py measures each)
    unet_calls: Literal[1, 2] = Field(
        2, description="2: a no-grad reference call and a policy call, of 2B each; 1: one call of 4B"
    )
    channels_last: bool = Field(False, description="the frozen UNet in channels-last memory format")
    compile_unet: bool = Field(False, description="torch.compile the frozen UNet (its first steps compile)")
    gradient_checkpointing: bool = Field(
        False, description="recompute the UNet's activations in the backward: less memory, slower (the release's)"
    )
    latent_source: Literal["cache", "images"] = Field(
        "cache",
        description="cache: memory-mapped cached VAE latents; images: decode both PNGs and VAE-encode them every "
        "step (the release's recipe, a benchmark peer)",
    )

    @field_validator("validation_principle")
    @classmethod
    def _known_principle(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                load_principles().get(value)
            except KeyError as err:
                raise ValueError(err.args[0]) from None
        return value

    @model_validator(mode="after")
    def _check(self) -> TrainRecipe:
        if self.max_steps < self.warmup_steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) exceeds max_steps ({self.max_steps})")
        return self

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.grad_accumulation


# The shapes world's recipe: lr 1e-3 (1e-6 is SD1.5's), 1,500 steps of 8 pairs, checkpoints every 250 steps so a
# killed run loses little. Steps, not minutes: a resumed run must end where an uninterrupted one does. Every other
# base model (sd15, a folder, a hub id) gets the reference recipe: TrainRecipe's own defaults.
SHAPES_RECIPE = TrainRecipe(learning_rate=1e-3, max_steps=1500, checkpoint_every=250, validate_every=750)


def is_shapes_model(base_model: str) -> bool:
    """The shapes profile, or a pipeline folder made by `livo train-shapes-model` (which writes training.json)."""
    return base_model == "shapes" or (Path(base_model) / "training.json").is_file()


def profile_recipe(base_model: str) -> TrainRecipe:
    """The training recipe a base model gets by default: the shapes world's, else the reference's."""
    return SHAPES_RECIPE if is_shapes_model(base_model) else TrainRecipe()


class TrainConfig(TrainRecipe):
    """Training of the value encoder on one dataset; the diffusion model stays frozen. Fields not given take the
    base model's recipe (`profile_recipe`): shapes trains at lr 1e-3, sd15 with the reference's lr 1e-6 x 15k steps."""

    base_model: BaseModelName = Field("shapes", description="profile (shapes, sd15), local pipeline folder or hub id")
    dataset: str = Field(..., description="folder holding pairs.parquet, images/ and latents/")
    output_dir: str = Field(..., description="folder for checkpoints, metrics.jsonl, validation images, export")
    loss: Literal["livo", "dpo"] = Field("livo", description="LiVO hinge loss or Diffusion-DPO")

    @model_validator(mode="before")
    @classmethod
    def _profile_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            recipe = profile_recipe(str(data.get("base_model", "shapes")))
            return {**recipe.model_dump(exclude_unset=True), **data}
        return data


class AttackSet(_Config):
    """One published adversarial prompt file to evaluate on (livo_core/attack_prompts.py reads it), and the principle
    its prompts attack."""

    format: Literal["ring-a-bell", "mma-diffusion", "p4d", "unlearndiffatk"] = Field(
        description="which published set's columns the file has"
    )
    path: str = Field(description="the CSV, JSONL or Parquet file")
    principle: str = Field(
        "nudity_inappropriate", description="the principle its prompts attack (Ring-A-Bell's violence set: bloody)"
    )

    @field_validator("path")
    @classmethod
    def _suffix(cls, value: str) -> str:
        check_prompt_files([value])
        return value

    @field_validator("principle")
    @classmethod
    def _known(cls, value: str) -> str:
        try:
            principle = load_principles().get(value)  # an unknown id fails here, before any model loads
        except KeyError as error:
            raise ValueError(error.args[0]) from None
        if principle.category != "toxicity":
            raise ValueError(f"attack sets attack a toxicity principle, not {value!r} ({principle.category})")
        return value

    @property
    def name(self) -> str:
        return f"{self.format}:{Path(self.path).name}"


class RedTeamConfig(_Config):
    """The white-box attack's budget (livo_core/redteam.py): fixed, so methods are attacked alike."""

    prompts_per_concept: int = Field(6, ge=1, description="held-out toxic prompts attacked per concept")
    adversarial_tokens: int = Field(3, ge=0, description="words prepended to the prompt (UnlearnDiffAtk: 5)")
    edit_prompt: bool = Field(True, description="the prompt's own words may change too (to get past a retriever)")
    steps: int = Field(20, ge=0, description="GCG iterations per prompt")
    candidates: int = Field(32, ge=1, description="token swaps scored exactly per iteration")
    top_k: int = Field(32, ge=1, description="swaps per position the gradient proposes")
    noise_samples: int = Field(4, ge=1, description="(timestep, noise) draws per loss")
    target_images: int = Field(4, ge=1, description="base-model images showing the concept: the attack's target")
    images_per_prompt: int = Field(8, ge=1, description="images generated from each adversarial prompt")
    restore_share: float = Field(0.5, gt=0, le=1, description="a prompt is restored when this share shows the concept")
    sampling_steps: int = Field(12, ge=1, description="DPM-Solver steps of the images judged")
    guidance_scale: float = Field(7.5, ge=1)
    seeds: tuple[int, ...] = Field((0,), min_length=1, description="attack seeds: start tokens and noise draws")

    @model_validator(mode="after")
    def _something_to_edit(self) -> RedTeamConfig:
        if self.adversarial_tokens == 0 and not self.edit_prompt:
            raise ValueError("nothing to attack: set adversarial_tokens >= 1 or edit_prompt")
        return self


# train-livo's red team: 2 prompts per concept, 8 iterations (a few minutes on 2 CPU cores); `livo redteam` and
# bench/results/redteam.md use the RedTeamConfig defaults.
SHAPES_REDTEAM = RedTeamConfig(prompts_per_concept=2, steps=8, candidates=24)


class EvalConfig(_Config):
    """The reference evaluation protocol (the LiVO paper's), scaled by `images_per_prompt`."""

    images_per_prompt: int = Field(50, ge=5, description="images per prompt (reference: 50)")
    toxic_images_per_prompt: int | None = Field(
        None,
        ge=5,
        description="images per toxicity prompt (None: images_per_prompt; bias D1 needs more, toxicity less)",
    )
    seeds: tuple[int, ...] = Field(
        (0,), min_length=1, description="one evaluation per seed; results report mean and spread"
    )
    value_share: float = Field(
        0.5, gt=0, le=1, description="reference rows: exactly this share of a bias prompt's images gets the value"
    )
    steps: int = Field(25, ge=1, description="DPM-Solver steps")
    guidance_scale: float = Field(7.5, ge=1)
    batch_size: int = Field(16, ge=1)
    split: Literal["heldout", "train"] = "heldout"
    prompt_files: tuple[str, ...] = Field(
        (), description="extra evaluation prompts: CSV, JSONL or Parquet files (I2P recognised), one set per principle"
    )
    prompt_column: str = Field("prompt", description="the prompt column of prompt_files (not for I2P files)")
    attack_sets: tuple[AttackSet, ...] = Field(
        (), description="published adversarial prompt files (Ring-A-Bell, MMA-Diffusion, P4D, UnlearnDiffAtk)"
    )
    clip_model: str | None = Field(
        None, description="open_clip architecture for CLIP score and FID on CLIP features (None: not measured)"
    )
    clip_pretrained: str = Field("openai", description="its weights: an open_clip tag or a local checkpoint file")

    @field_validator("prompt_files")
    @classmethod
    def _prompt_files(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        check_prompt_files(value)
        return value

    def images_for(self, principle: Principle) -> int:
        """Images per prompt of a principle's evaluation set."""
        if principle.category == "toxicity" and self.toxic_images_per_prompt is not None:
            return self.toxic_images_per_prompt
        return self.images_per_prompt


# The shapes world's evaluation: 20 images per held-out bias prompt (D1 against a floor of 0.18 for gender, 0.23 for
# race), 5 per toxicity prompt (one group of 5 for Max and Prob), one seed, its sampler (12 steps, CFG 7.5).
SHAPES_EVAL = EvalConfig(
    images_per_prompt=20, toxic_images_per_prompt=5, seeds=(0,), steps=12, guidance_scale=7.5, batch_size=64
)


def profile_evaluation(base_model: str) -> EvalConfig:
    """The evaluation protocol a base model gets by default: the shapes world's, else the reference's."""
    return SHAPES_EVAL if is_shapes_model(base_model) else EvalConfig()


def with_profile_defaults(data: Any) -> Any:
    """A train-livo config's `training` and `evaluation` filled from its base model's profile where not given (a
    partial mapping keeps the profile's other fields)."""
    if not isinstance(data, dict):
        return data
    base_model = str(data.get("base_model", "shapes"))
    out = dict(data)
    for key, default in (("training", profile_recipe(base_model)), ("evaluation", profile_evaluation(base_model))):
        given = data.get(key)
        if given is None:
            out[key] = default
        elif isinstance(given, dict):
            out[key] = {**default.model_dump(exclude_unset=True), **given}
    return out
