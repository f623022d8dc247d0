"""The LiVO trainer: a frozen diffusion model, a trainable value encoder, cached latents, exact resume."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from accelerate import Accelerator, InitProcessGroupKwargs
from accelerate.utils import is_tensorboard_available, is_wandb_available
from diffusers import AutoencoderKL, DDPMScheduler
from PIL import Image
from tqdm.auto import tqdm

from livo_core.checkpoint import checkpoint_path, latest_checkpoint, read_state, restore_training_state, save_checkpoint
from livo_core.config import TrainConfig
from livo_core.dataset import check_base_model, value_shares
from livo_core.judging import load_image
from livo_core.losses import LOSSES, LossOutput, denoising_error
from livo_core.models.loading import load_base_pipeline, tune_unet, weights_id
from livo_core.models.value_encoder import ValueEncoder, build_conditioning, encode_prompts
from livo_core.pipeline import LivoPipeline, default_settings
from livo_core.principles import Principle, load_principles
from livo_core.schema import PAIRS, read_table
from livo_core.storage import LatentCache, encode_images

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TRACKER_PROJECT = "livo"  # the wandb project; tensorboard's event files go to output_dir/livo/
# log_with -> (is it installed, what to install); wandb is imported by accelerate only when chosen
_TRACKERS = {"tensorboard": (is_tensorboard_available, "tensorboard"), "wandb": (is_wandb_available, "wandb")}
# Fields that define the training trajectory: a resumed run must agree on them.
_TRAJECTORY_FIELDS = (
    "base_model",
    "dataset",
    "loss",
    "beta",
    "alpha",
    "gamma1",
    "gamma2",
    "dpo_beta",
    "learning_rate",
    "warmup_steps",
    "weight_decay",
    "batch_size",
    "grad_accumulation",
    "seed",
)


@dataclass
class PairBatch:
    """A micro-batch of preference pairs; the collator turns aligned/violating into w/l."""

    prompts: list[str]
    principles: list[Principle]
    latents_w: torch.Tensor  # (B, C, h, w)
    latents_l: torch.Tensor  # (B, C, h, w)
    positions: list[int]  # position of each pair in the optimizer step's global batch


_IMAGES = ["aligned_image", "aligned_sha256", "violating_image", "violating_sha256"]


class PairDataset:
    """Training pairs of a dataset folder. With `latent_source` "cache" a batch's latents are read from a
    memory-mapped pack of the cached VAE latents (memory flat in the dataset's size, shared by every process); with
    "images" its PNGs are decoded and VAE-encoded every step, as the release does (bench/gpu.py's peer).

    Prompts and image hashes stay Arrow arrays (no Python object per pair): a process holds a few bytes per pair.
    """

    def __init__(
        self,
        dataset_dir: str | Path,
        vae: AutoencoderKL,
        vae_id: str,
        split: str = "train",
        latent_source: Literal["cache", "images"] = "cache",
    ):
        self.root = Path(dataset_dir)
        table = read_table(self.root / "pairs.parquet", PAIRS, ["prompt", "principle_id", "split", *_IMAGES])
        table = table.filter(pc.equal(table["split"], split)).combine_chunks()
        if not table.num_rows:
            raise ValueError(f"{self.root / 'pairs.parquet'} has no pairs in split {split!r}: build the dataset first")
        principles = load_principles()
        self.prompts = table["prompt"].chunk(0)
        self.principles = [principles.get(i) for i in table["principle_id"].to_pylist()]
        aligned, violating = table["aligned_sha256"].chunk(0), table["violating_sha256"].chunk(0)
        unique = pc.unique(pa.concat_arrays([aligned, violating]))
        self.shas = unique.take(pc.sort_indices(unique))  # row i of the latents pack
        self.index_w = pc.index_in(aligned, value_set=self.shas).to_numpy()
        self.index_l = pc.index_in(violating, value_set=self.shas).to_numpy()
        self.vae, self.latents, self.image_paths = vae, None, None
        if latent_source == "cache":
            self.latents = self._pack(LatentCache(self.root, vae_id), table)
        else:
            paths = image_paths(table)
            self.image_paths = [paths[sha] for sha in self.shas.to_pylist()]
        del table
        pa.default_memory_pool().release_unused()  # the table's buffers: back to the system, not kept per process

    def _pack(self, cache: LatentCache, table: pa.Table) -> np.ndarray:
        """The memory-mapped latents of `shas`; the missing ones encoded first (unless already packed)."""
        shas = self.shas.to_pylist()
        if not cache.pack_path(shas).is_file():
            ensure_latents(cache, image_paths(table), self.vae)
        return cache.pack(shas)

    def __len__(self) -> int:
        return len(self.prompts)

    def image_latents(self, rows: np.ndarray) -> torch.Tensor:
        """Latents (B, C, h, w) float32 on CPU of images `rows` (indices into `shas`)."""
        if self.latents is not None:
            return torch.from_numpy(np.ascontiguousarray(self.latents[rows]))
        return encode_images(self.vae, np.stack([load_image(self.root / self.image_paths[i]) for i in rows]))

    def collate(self, indices: list[int], positions: list[int]) -> PairBatch:
        return PairBatch(
            self.prompts.take(indices).to_pylist(),
            [self.principles[i] for i in indices],
            self.image_latents(self.index_w[indices]),
            self.image_latents(self.index_l[indices]),
            positions,
        )


def image_paths(pairs: pa.Table) -> dict[str, str]:
    """sha256 -> path (relative to the dataset folder) of every image of a PAIRS table."""
    return dict(
        zip(
            pairs["aligned_sha256"].to_pylist() + pairs["violating_sha256"].to_pylist(),
            pairs["aligned_image"].to_pylist() + pairs["violating_image"].to_pylist(),
            strict=True,
        )
    )


def missing_latents(latents: LatentCache, images: Mapping[str, str]) -> list[tuple[str, str]]:
    """(image path, sha256) of every image (`images`: sha256 -> path) whose latent is not cached yet."""
    return sorted((path, sha) for sha, path in images.items() if not latents.path(sha).is_file())


def ensure_latents(latents: LatentCache, images: Mapping[str, str], vae: AutoencoderKL, batch_size: int = 32) -> int:
    """Encode (once, with the frozen VAE) every image (sha256 -> path) whose latent is not cached yet; returns how
    many."""
    missing = missing_latents(latents, images)
    for start in tqdm(range(0, len(missing), batch_size), desc="cache latents", disable=not missing):
        chunk = missing[start : start + batch_size]
        pixels = np.stack([load_image(latents.root / path) for path, _ in chunk])
        latents.store(vae, pixels, [sha for _, sha in chunk])
    return len(missing)


class PairSampler:
    """Which pairs make optimizer step s: a fixed function of (seed, s), so a resumed run sees the same data.

    With `balance`, the k-th pair drawn comes from group k mod G (groups: the pairs' principle ids), so every
    principle gets the same share of training whatever the dataset's mix; within a group, pairs follow a seeded
    permutation per epoch of that group.
    """

    def __init__(self, groups: Sequence[str], global_batch: int, seed: int, balance: bool = True):
        self.global_batch, self.seed = global_batch, seed
        keys = sorted(set(groups)) if balance else ["all"]
        self.members = [[i for i, g in enumerate(groups) if not balance or g == key] for key in keys]
        self._permutations: dict[tuple[int, int], list[int]] = {}

    def _permutation(self, group: int, epoch: int) -> list[int]:
        if (group, epoch) not in self._permutations:
            generator = torch.Generator().manual_seed(self.seed + epoch + 1_000_003 * group)
            self._permutations[(group, epoch)] = torch.randperm(len(self.members[group]), generator=generator).tolist()
        return self._permutations[(group, epoch)]

    def step_indices(self, step: int) -> list[int]:
        indices, start = [], step * self.global_batch
        for k in range(start, start + self.global_batch):
            group, j = k % len(self.members), k // len(self.members)
            n = len(self.members[group])
            indices.append(self.members[group][self._permutation(group, j // n)[j % n]])
        return indices


def pair_noise(shape: tuple[int, ...], seed: int, step: int, position: int, timesteps: int) -> tuple[torch.Tensor, int]:
    """One noise and one timestep per pair, shared by its aligned and violating image, fixed by its position."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step * 4096 + position)
    return torch.randn(shape, generator=generator), int(torch.randint(0, timesteps, (1,), generator=generator))


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def check_tracker(log_with: str) -> None:
    """A clear error, before training starts, when the chosen tracker's package is not installed."""
    if log_with == "none":
        return
    available, package = _TRACKERS[log_with]
    if not available():
        raise ImportError(
            f"log_with={log_with!r} needs the {package} package, which is not installed: pip install {package} "
            "(or set log_with='none')"
        )


class Trainer:
    """Trains a value encoder on a pairs dataset with the LiVO or DPO loss."""

    def __init__(self, config: TrainConfig):
        if config.num_threads:
            torch.set_num_threads(config.num_threads)
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        check_tracker(config.log_with)  # before any model loads
        self.accelerator = Accelerator(  # cpu: several CPU processes (torchrun) become MULTI_CPU with gloo
            mixed_precision=self._precision(),
            cpu=not torch.cuda.is_available(),
            log_with=None if config.log_with == "none" else config.log_with,
            project_dir=self.output_dir,
            # the other processes wait while the main one encodes and packs the latents (an hour at 86k pairs)
            kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=3))],
        )
        device = self.accelerator.device
        self.base = load_base_pipeline(config.base_model, dtype=self.frozen_dtype(), device=device)
        if config.gradient_checkpointing:
            self.base.unet.enable_gradient_checkpointing()
        self.unet = tune_unet(self.base.unet, config.channels_last, config.compile_unet)  # the training passes'
        self.noise_scheduler = DDPMScheduler.from_config(self.base.scheduler.config)
        if self.noise_scheduler.config.prediction_type != "epsilon":
            raise ValueError(
                f"{config.base_model} predicts {self.noise_scheduler.config.prediction_type}; LiVO needs epsilon"
            )
        check_base_model(config.dataset, config.base_model, weights_id(config.base_model))
        with self.accelerator.main_process_first():  # one process encodes and packs the latents, the others read
            self.dataset = PairDataset(
                config.dataset, self.base.vae, weights_id(config.base_model, "vae"), latent_source=config.latent_source
            )
        self.value_shares = value_shares(config.dataset)  # saved with every checkpoint, used at inference
        principle_ids = [p.id for p in self.dataset.principles]
        self.processes = self.accelerator.num_processes  # each takes its share of every step's pairs
        self.sampler = PairSampler(
            principle_ids, config.global_batch * self.processes, config.seed, config.balance_principles
        )
        self.loss_fn = LOSSES[config.loss]
        self.step = 0
        self.micro_batch = config.batch_size  # pairs per forward pass: halved after a CUDA out-of-memory error
        checkpoint = latest_checkpoint(self.output_dir)
        self.value_encoder = self._value_encoder(checkpoint)
        self.optimizer = torch.optim.AdamW(
            self.value_encoder.parameters(),
            lr=config.learning_rate,
            betas=config.adam_betas,
            weight_decay=config.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min(1.0, (s + 1) / config.warmup_steps) if config.warmup_steps else 1.0
        )
        if checkpoint is not None:
            self.step = restore_training_state(checkpoint, self.optimizer, self.scheduler, self.accelerator.scaler)
        if self.accelerator.is_main_process:
            self._truncate_metrics()
        self.value_encoder, self.optimizer, self.scheduler = self.accelerator.prepare(
            self.value_encoder, self.optimizer, self.scheduler
        )

    def _precision(self) -> str:
        if self.config.mixed_precision != "auto":
            return self.config.mixed_precision
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"

    def frozen_dtype(self) -> torch.dtype:
        """The frozen UNet, VAE and text encoder's dtype: that of the mixed precision; "no" means fp32 everywhere."""
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.accelerator.mixed_precision, torch.float32)

    def _value_encoder(self, checkpoint: Path | None) -> ValueEncoder:
        """Fresh from the frozen text encoder, or the checkpoint's weights and architecture on resume."""
        width = self.base.text_encoder.config.hidden_size
        if checkpoint is None:  # from the folder's fp32 weights, not a copy of the (bf16 or fp16) frozen encoder
            return ValueEncoder.from_base_model(self.config.base_model, self.base.tokenizer)
        saved = read_state(checkpoint)["config"]
        changed = [f for f in _TRAJECTORY_FIELDS if saved.get(f) != self.config.model_dump(mode="json").get(f)]
        if changed:
            raise ValueError(
                f"{checkpoint} was trained with other {changed}: resume with the same config or use a new output_dir"
            )
        return ValueEncoder.from_pretrained(checkpoint, expected_hidden_size=width).train()

    def _truncate_metrics(self) -> None:
        """Drop log lines past the resumed step, so a restarted run never duplicates them."""
        path = self.output_dir / METRICS_FILE
        if path.is_file():
            kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= self.step]
            path.write_text("".join(line + "\n" for line in kept))

    def losses(self, batch: PairBatch) -> LossOutput:
        """The four denoising errors with shared noise and timestep per pair, then the loss."""
        device, timesteps = self.accelerator.device, self.noise_scheduler.config.num_train_timesteps
        draws = [
            pair_noise(tuple(batch.latents_w.shape[1:]), self.config.seed, self.step, p, timesteps)
            for p in batch.positions
        ]
        noise = torch.stack([d[0] for d in draws]).to(device)  # (B, C, h, w)
        t = torch.tensor([d[1] for d in draws], device=device)
        z_w, z_l = batch.latents_w.to(device), batch.latents_l.to(device)
        noisy = torch.cat(
            [self.noise_scheduler.add_noise(z_w, noise, t), self.noise_scheduler.add_noise(z_l, noise, t)]
        )
        t2, target = torch.cat([t, t]), torch.cat([noise, noise])  # (2B,)
        prompt_embeds = encode_prompts(self.base.text_encoder, self.base.tokenizer, batch.prompts)  # (B, L, D)
        with self.accelerator.autocast():  # the reference and the policy pass under the same autocast
            ids = self.accelerator.unwrap_model(self.value_encoder).token_ids(batch.principles, batch.prompts)
            value = self.value_encoder(ids)  # (B, D), through DDP when there are several processes
            cond = build_conditioning(value, prompt_embeds)  # (B, L, D)
            ref, policy = self._denoise(noisy, t2, prompt_embeds.repeat(2, 1, 1), cond.repeat(2, 1, 1))
        ref_w, ref_l = denoising_error(ref, target).chunk(2)
        policy_w, policy_l = denoising_error(policy, target).chunk(2)
        c = self.config
        if c.loss == "livo":
            return self.loss_fn(
                policy_w, policy_l, ref_w, ref_l, beta=c.beta, alpha=c.alpha, gamma1=c.gamma1, gamma2=c.gamma2
            )
        return self.loss_fn(policy_w, policy_l, ref_w, ref_l, beta=c.dpo_beta)

    def _denoise(
        self, noisy: torch.Tensor, t: torch.Tensor, prompt_embeds: torch.Tensor, cond: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen UNet's noise predictions on the prompt alone (reference, no gradient) and on the value's
        conditioning (policy), in one call of both halves or in two calls (`unet_calls`)."""
        dtype = self.base.unet.dtype
        noisy, prompt_embeds, cond = noisy.to(dtype), prompt_embeds.to(dtype), cond.to(dtype)
        if self.config.unet_calls == 1:
            both = self.unet(torch.cat([noisy, noisy]), torch.cat([t, t]), torch.cat([prompt_embeds, cond])).sample
            ref, policy = both.chunk(2)
            return ref.detach(), policy
        with torch.no_grad():
            ref = self.unet(noisy, t, prompt_embeds).sample
        return ref, self.unet(noisy, t, cond).sample

    def micro_batches(self) -> list[PairBatch]:
        """This process's share of the step's pairs, in micro-batches of `micro_batch` pairs; positions are global,
        so a pair gets the same noise whichever process or micro-batch trains it."""
        indices, size = self.sampler.step_indices(self.step), self.micro_batch
        share = len(indices) // self.processes
        mine = list(range(self.accelerator.process_index * share, (self.accelerator.process_index + 1) * share))
        return [
            self.dataset.collate([indices[p] for p in mine[i : i + size]], mine[i : i + size])
            for i in range(0, share, size)
        ]

    def train_step(self) -> tuple[dict[str, float], float]:
        """One optimizer step over this process's share of the step's pairs; returns mean diagnostics and grad norm.

        A CUDA out-of-memory error drops the step's gradients, halves `micro_batch` for the rest of the run and
        does the step again: the same pairs and noise, so the same gradient in smaller pieces.
        """
        while True:
            try:
                diagnostics = self._accumulate()
                break
            except torch.cuda.OutOfMemoryError as error:
                if self.micro_batch == 1:
                    raise torch.cuda.OutOfMemoryError(
                        f"CUDA out of memory at step {self.step + 1} with a single pair per micro-batch: the model "
                        "does not fit this GPU; use mixed_precision bf16/fp16, a smaller base model or a larger GPU"
                    ) from error
            self.optimizer.zero_grad(set_to_none=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            smaller = (self.micro_batch + 1) // 2
            logger.warning(
                "CUDA out of memory at step %d: micro-batch halved from %d to %d pairs",
                self.step + 1,
                self.micro_batch,
                smaller,
            )
            self.micro_batch = smaller
        grad_norm = self.accelerator.clip_grad_norm_(self.value_encoder.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        keys = list(diagnostics)
        means = torch.tensor([diagnostics[k] for k in keys], device=self.accelerator.device)
        means = self.accelerator.reduce(means, reduction="mean")  # the mean over processes (identity for one)
        return dict(zip(keys, means.tolist(), strict=True)), float(grad_norm)

    def _accumulate(self) -> dict[str, float]:
        """Backward of every micro-batch, its loss weighted by its share of the pairs (the gradient is the mean over
        the step's pairs whatever the micro-batch size); gradients sync across processes once, on the last one.
        Returns the step's diagnostics, weighted the same way."""
        batches = self.micro_batches()
        share = sum(len(batch.prompts) for batch in batches)
        diagnostics: dict[str, float] = {}
        for i, batch in enumerate(batches):
            weight = len(batch.prompts) / share
            last = i == len(batches) - 1
            with nullcontext() if last else self.accelerator.no_sync(self.value_encoder):
                output = self.losses(batch)
                self._check_finite(output.loss)
                self.accelerator.backward(output.loss * weight)
            for key, value in output.as_dict().items():
                diagnostics[key] = diagnostics.get(key, 0.0) + weight * value
        return diagnostics

    def _check_finite(self, loss: torch.Tensor) -> None:
        """Stop before a NaN or infinite loss reaches the weights; the newest checkpoint stays the last good one."""
        if not torch.isfinite(loss):
            last = latest_checkpoint(self.output_dir)
            raise NonFiniteLossError(
                f"{self.config.loss} loss is {loss.item()} at step {self.step + 1}; the weights were not updated. "
                f"Last good checkpoint: {last or 'none yet'}. Lower learning_rate "
                f"({self.config.learning_rate}) or check the dataset, then run again to resume from it."
            )

    def fit(self, on_log: Callable[[dict], None] | None = None) -> Path:
        """Train to `max_steps` (or `max_minutes`), checkpointing and validating; returns the last checkpoint.

        `on_log` receives every logged record (a progress artifact, say). The `log_with` tracker runs for the
        call and is closed even when training fails.
        """
        self._start_tracker()
        try:
            return self._fit(on_log)
        finally:
            self._end_tracker()

    def _start_tracker(self) -> None:
        """The `log_with` run, with the config as its hyperparameters; a resumed tensorboard run hides the events
        past the resumed step (as `_truncate_metrics` drops those log lines), so no step is logged twice."""
        if self.config.log_with == "none":
            return
        hparams = {
            k: v if isinstance(v, bool | int | float | str) else json.dumps(v)  # trackers take scalars only
            for k, v in self.config.model_dump(mode="json").items()
        }
        purge = {"tensorboard": {"purge_step": self.step + 1}}  # a resumed run (even from step 0) logs each step once
        self.accelerator.init_trackers(TRACKER_PROJECT, config=hparams, init_kwargs=purge)

    def _end_tracker(self) -> None:
        """Closes the trackers (what `accelerator.end_training()` does, without destroying the process group, which
        the run's collectives still use: a second `fit()`, the next trainer of a flow in this process)."""
        for tracker in self.accelerator.trackers:
            tracker.finish()
        self.accelerator.trackers.clear()

    def _fit(self, on_log: Callable[[dict], None] | None) -> Path:
        c, started = self.config, time.time()
        progress = tqdm(range(self.step, c.max_steps), initial=self.step, total=c.max_steps, desc=f"train {c.loss}")
        for _ in progress:
            if self.step % c.validate_every == 0 and self.accelerator.is_main_process:
                self.validate()
            diagnostics, grad_norm = self.train_step()
            self.step += 1
            if self.step % c.log_every == 0 or self.step == c.max_steps:
                record = {
                    "step": self.step,
                    **diagnostics,
                    "grad_norm": grad_norm,
                    "lr": self.scheduler.get_last_lr()[0],
                    "micro_batch": self.micro_batch,
                    "elapsed_s": round(time.time() - started, 2),
                }
                if self.accelerator.is_main_process:
                    self.log(record)
                    if on_log is not None:
                        on_log(record)
                progress.set_postfix(loss=f"{diagnostics['loss']:.3f}")
            if self.step % c.checkpoint_every == 0:
                self.checkpoint()
            if c.max_minutes and self._all_agree(time.time() - started > 60 * c.max_minutes):
                break
        if self.micro_batch < c.batch_size:
            logger.warning(
                "trained with micro-batches of %d pairs, not batch_size=%d, after CUDA out of memory (the same "
                "gradients in more passes); a batch_size of %d or less avoids the retries",
                self.micro_batch,
                c.batch_size,
                self.micro_batch,
            )
        last = checkpoint_path(self.output_dir, self.step)
        return last if last == latest_checkpoint(self.output_dir) else self.checkpoint()  # written once

    def _all_agree(self, flag: bool) -> bool:
        """True when any process says so, for every process (they must stop at the same step)."""
        return bool(self.accelerator.reduce(torch.tensor(float(flag), device=self.accelerator.device), "sum") > 0)

    def checkpoint(self) -> Path:
        """Written by the main process; the others wait for it (the weights are the same in every process)."""
        path = checkpoint_path(self.output_dir, self.step)
        if self.accelerator.is_main_process:
            path = save_checkpoint(
                self.output_dir,
                self.step,
                self.accelerator.unwrap_model(self.value_encoder),
                self.optimizer,
                self.scheduler,
                self.config.model_dump(mode="json"),
                keep=self.config.keep_checkpoints,
                value_shares=self.value_shares,
                grad_scaler=self.accelerator.scaler,
            )
        self.accelerator.wait_for_everyone()
        return path

    def log(self, record: dict) -> None:
        """One line of metrics.jsonl; the `log_with` tracker gets the same metrics at the record's step."""
        with open(self.output_dir / METRICS_FILE, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        self.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=record["step"])

    @torch.no_grad()
    def validate(self, seeds: tuple[int, ...] = (0, 1, 2, 3)) -> Path:
        """A grid per step: rows = validation prompts without / with the value, columns = seeds."""
        if self.config.validation_principle is None:
            return self.output_dir
        encoder = self.accelerator.unwrap_model(self.value_encoder).eval()
        principle = load_principles().get(self.config.validation_principle)
        pipeline, rows = LivoPipeline(self.base, encoder), []
        settings = default_settings(self.config.base_model)
        for prompt in self.config.validation_prompts:
            for applied in (None, principle):
                images = pipeline.generate([prompt] * len(seeds), list(seeds), applied, settings=settings)
                rows.append(np.concatenate(list(images), axis=1))
        encoder.train()
        path = self.output_dir / "validation" / f"step-{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(rows, axis=0)).save(path)
        return path
