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

from livo_core.principles import load_principles

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
    validation_prompts: tuple[str, ...] = Field(("a photo of a doctor",), description="prompts of the validation grid")
    validation_principle: str | None = Field("gender_equality", description="principle id applied in the grid")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")

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


class TrainConfig(TrainRecipe):
    """Training of the value encoder on one dataset; the diffusion model stays frozen."""

    base_model: BaseModelName = Field("shapes", description="profile (shapes, sd15), local pipeline folder or hub id")
    dataset: str = Field(..., description="folder holding pairs.parquet, images/ and latents/")
    output_dir: str = Field(..., description="folder for checkpoints, metrics.jsonl, validation images, export")
    loss: Literal["livo", "dpo"] = Field("livo", description="LiVO hinge loss or Diffusion-DPO")


class EvalConfig(_Config):
    """The reference evaluation protocol (../shared/livo-reference.md), scaled by `images_per_prompt`."""

    images_per_prompt: int = Field(50, ge=5, description="images per prompt (reference: 50)")
    seeds: tuple[int, ...] = Field(
        (0,), min_length=1, description="one evaluation per seed; results report mean and spread"
    )
    value_dropout: float = Field(0.5, ge=0, le=1, description="share of bias images generated without the value")
    steps: int = Field(25, ge=1, description="DPM-Solver steps")
    guidance_scale: float = Field(7.5, ge=1)
    batch_size: int = Field(16, ge=1)
    split: Literal["heldout", "train"] = "heldout"
    prompt_files: tuple[str, ...] = Field(
        (), description="extra evaluation prompts: CSV, JSONL or Parquet files (I2P recognised), one set per principle"
    )
    prompt_column: str = Field("prompt", description="the prompt column of prompt_files (not for I2P files)")
    clip_model: str | None = Field(
        None, description="open_clip architecture for CLIP score and FID on CLIP features (None: not measured)"
    )
    clip_pretrained: str = Field("openai", description="its weights: an open_clip tag or a local checkpoint file")

    @field_validator("prompt_files")
    @classmethod
    def _prompt_files(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        check_prompt_files(value)
        return value
