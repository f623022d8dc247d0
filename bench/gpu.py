"""livo's GPU speed against its peers, side by side in one run (fits 8 minutes on one H200):

1. training: livo's step (latents from the memory-mapped cache) and each speed option alone, against the same trainer
   configured as the release's recipe (fp16, gradient checkpointing, both PNGs decoded and VAE-encoded every step in
   the main process); pairs/s and peak memory at batch 8 and at the best batch;
2. generation: `LivoPipeline` (plain and tuned) against a plain `StableDiffusionPipeline`, the same DPM-Solver++
   25 steps at CFG 7.5, images/s;
3. the build's stages per image (generation, judges that load here, PNG write, VAE encode and latent write) and the
   projected time of an 86k-pair build (172k images).

`--size sd15` builds SD1.5-size components from the published configs (random weights: the architecture fixes the
cost, nothing is downloaded), 512 px; `--size tiny` the SD1.5-architecture miniature (64 px), which runs on a CPU in
about a minute (20 s with --quick) and tests this script, not a machine. Writes bench/results/gpu-<device>.md and .json
after every figure (a run cut short keeps what it measured); one configuration failing is reported, not fatal.

    python -m bench.gpu                      # sd15 on a GPU, tiny on a CPU
    python -m bench.gpu --size tiny --quick  # the test's run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate.state import AcceleratorState
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from livo_core.config import TrainConfig
from livo_core.dataset import write_pairs
from livo_core.judging import JudgePool
from livo_core.models.loading import load_base_pipeline, tune_unet, use_reference_sampler, weights_id
from livo_core.models.miniature import sd15_scheduler, write_sd15_miniature
from livo_core.models.tokenizer import build_clip_tokenizer
from livo_core.pipeline import GenerationSettings, LivoPipeline
from livo_core.principles import load_principles
from livo_core.storage import LatentCache, content_id, save_image
from livo_core.training import Trainer

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
PAPER_PAIRS, PAPER_IMAGES = 86_000, 172_000
PROMPT = "a photo of a doctor in a hospital corridor, detailed, natural light"
PRINCIPLE = "gender_equality"


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs: the full plan fits 8 minutes on one H200; `quick` is the CPU test's."""

    pairs: int = 64  # training pairs in the bench dataset
    warmup_steps: int = 3  # excluded from the timing (compilation, allocator, cuDNN autotune); reported
    timed_steps: int = 10
    batches: tuple[int, ...] = (8, 16, 32, 64)  # the best-batch sweep
    generation_batch: int = 32
    generation_steps: int = 25
    timed_generations: int = 2
    compile: bool = True
    sweep_budget_s: float = 300.0  # from the start: the best-batch sweep stops past it
    budget_s: float = 450.0  # from the start: later generation runs are skipped past it (8 minutes in all)


QUICK = Plan(
    pairs=8,
    warmup_steps=1,
    timed_steps=2,
    batches=(8, 16),
    generation_batch=4,
    generation_steps=4,
    timed_generations=1,
    compile=False,
)


# SD1.5's published configs (unet/config.json, vae/config.json, text_encoder/config.json of the hub folder).
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    sample_size=512,
    scaling_factor=0.18215,
)
SD15_TEXT = CLIPTextConfig(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)


def sd15_size_modules(device: torch.device) -> tuple[AutoencoderKL, CLIPTextModel, UNet2DConditionModel]:
    """SD1.5's VAE, text encoder and UNet from the published configs, random weights, built on `device`."""
    torch.manual_seed(0)
    with device:
        return AutoencoderKL(**SD15_VAE), CLIPTextModel(SD15_TEXT), UNet2DConditionModel(**SD15_UNET)


def write_sd15_size(folder: Path, device: torch.device) -> Path:
    """An SD1.5-size pipeline folder with random weights (built on `device`, saved in fp16)."""
    vae, text_encoder, unet = sd15_size_modules(device)
    pipeline = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_clip_tokenizer(77),
        unet=unet,
        scheduler=sd15_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    return folder


def standin_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth random images (N, size, size, 3) uint8: PNGs the size of real ones' rather than of pure noise."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((n, 3, 8, 8), dtype=np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    noisy = smooth.permute(0, 2, 3, 1).numpy() + rng.normal(0, 0.03, (n, size, size, 3))
    return (np.clip(noisy, 0, 1) * 255).astype(np.uint8)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Mean seconds of `fn` over `repeats` calls, the GPU synchronised around them."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def write_bench_dataset(base: str, root: Path, n_pairs: int, device: torch.device) -> dict[str, float]:
    """A pairs dataset of stand-in images recorded as `base`'s, its latents encoded by `base`'s VAE; returns the
    seconds per image of the PNG write and of the VAE encode plus latent write (build stages)."""
    pipeline = load_base_pipeline(base, device=device)
    size = pipeline.unet.config.sample_size * pipeline.vae_scale_factor
    images = standin_images(2 * n_pairs, size)
    png_s = timed(lambda: [save_image(image, root) for image in images], device) / len(images)
    shas = [save_image(image, root)[1] for image in images]
    cache = LatentCache(root, weights_id(base, "vae"))
    latent_s = timed(lambda: cache.store(pipeline.vae, images, shas), device) / len(images)
    principle = load_principles().get(PRINCIPLE)
    generation = json.dumps({"weights": weights_id(base), "vae": weights_id(base, "vae"), "standin": True})
    rows = [
        {
            "pair_id": content_id(f"bench|{i}"),
            "prompt_id": content_id(f"bench-prompt|{i}"),
            "prompt": f"{PROMPT} {i}",
            "principle_id": principle.id,
            "value_text": principle.text,
            "category": principle.category,
            "aligned_prompt": f"{PROMPT} {i}",
            "target_class": "female",
            "aligned_image": f"images/{shas[2 * i][:2]}/{shas[2 * i]}.png",
            "aligned_sha256": shas[2 * i],
            "violating_image": f"images/{shas[2 * i + 1][:2]}/{shas[2 * i + 1]}.png",
            "violating_sha256": shas[2 * i + 1],
            "aligned_label": "female",
            "aligned_score": 1.0,
            "violating_label": "male",
            "violating_score": 1.0,
            "seed": i,
            "base_model": base,
            "generation": generation,
            "judge_name": "standin",
            "judge_version": "0",
            "annotator": "standin",
            "annotator_version": "0",
            "template_version": "0",
            "prompt_source": "bench",
            "prompt_family": None,
            "split": "train",
        }
        for i in range(n_pairs)
    ]
    write_pairs([rows], root, meta={"standin": True})
    return {"png_write_s": png_s, "latent_write_s": latent_s}


@dataclass
class TrainFigure:
    name: str
    batch: int
    pairs_per_s: float  # 0: the configuration failed (`note` says why)
    step_ms: float
    warmup_s: float
    peak_gib: float | None
    options: dict = field(default_factory=dict)
    note: str = ""


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def fresh_device(device: torch.device) -> None:
    """Nothing of an earlier run left: its objects collected, compiled graphs dropped (dynamo's recompile limit
    would otherwise turn later runs eager), the allocator emptied and the peak reset."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def measure_training(base: str, dataset: Path, work: Path, plan: Plan, name: str, batch: int, **options) -> TrainFigure:
    """Steps of one trainer configuration: warm-up steps timed apart, then `plan.timed_steps` steps."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    AcceleratorState._reset_state(reset_partial_state=True)  # a process-wide singleton; each run sets its precision
    fresh_device(device)
    try:
        config = TrainConfig(
            base_model=base,
            dataset=str(dataset),
            output_dir=str(work / f"{name}-{batch}".replace(" ", "_").replace("+", "")),
            batch_size=batch,
            max_steps=10_000,
            validation_principle=None,
            balance_principles=False,
            **options,
        )
        trainer = Trainer(config)

        def step() -> None:
            trainer.train_step()
            trainer.step += 1

        warmup = timed(step, device, plan.warmup_steps) * plan.warmup_steps
        seconds = timed(step, device, plan.timed_steps)  # per step
        note = f"micro-batch fell to {trainer.micro_batch} (CUDA out of memory)" if trainer.micro_batch < batch else ""
        return TrainFigure(name, batch, batch / seconds, 1000 * seconds, warmup, peak_gib(device), options, note)
    except Exception as error:  # noqa: BLE001 (one configuration failing must not cost the others' figures)
        return TrainFigure(name, batch, 0.0, 0.0, 0.0, peak_gib(device), options, f"failed: {_short(error)}")
    finally:
        trainer = None
        fresh_device(device)


def _short(error: Exception) -> str:
    return f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"


# The release's recipe in livo's trainer: fp16 autocast, gradient checkpointing, both PNGs decoded in the main process
# and VAE-encoded every step. Each speed option is measured alone on top of livo's default.
RELEASE = {
    "mixed_precision": "fp16" if torch.cuda.is_available() else "no",  # fp16 autocast needs a GPU
    "gradient_checkpointing": True,
    "latent_source": "images",
}
OPTIONS = {"+ channels_last": {"channels_last": True}, "+ one UNet call": {"unet_calls": 1}}
COMPILE = {"+ torch.compile": {"compile_unet": True}}


def training_figures(
    base: str, dataset: Path, work: Path, plan: Plan, results: Results, deadline: float
) -> list[TrainFigure]:
    """Each configuration at batch 8, then livo's best options over `plan.batches` (until out of memory or past
    `deadline`); every figure is saved as soon as it is measured."""
    figures = results.data.setdefault("training", [])

    def measure(name: str, batch: int, **options) -> TrainFigure:
        figure = measure_training(base, dataset, work, plan, name, batch, **options)
        figures.append(asdict(figure))
        results.save(f"{name} (batch {batch}): {figure.pairs_per_s:.1f} pairs/s {figure.note}")
        return figure

    measured = [measure("release recipe", 8, **RELEASE), measure("livo default", 8)]
    for name, options in {**OPTIONS, **(COMPILE if plan.compile else {})}.items():
        measured.append(measure(name, 8, **options))
    best = best_options(measured)
    for batch in plan.batches:
        if batch > 8 and time.monotonic() > deadline:
            results.data["notes"].append(f"the best-batch sweep stopped before batch {batch}: past its time budget")
            results.save(results.data["notes"][-1])
            break
        if measure("livo best", batch, **best).note:  # out of memory or failed: larger batches would be too
            break
    return measured


def best_options(figures: list[TrainFigure], margin: float = 1.03) -> dict:
    """livo's default plus every option that alone was faster than the default by more than `margin` (one short
    sample each: smaller gains are noise)."""
    default = next(f for f in figures if f.name == "livo default")
    best: dict = {}
    for figure in figures:
        if figure.name.startswith("+") and figure.pairs_per_s > margin * default.pairs_per_s and not figure.note:
            best |= figure.options
    return best


@dataclass
class GenerationFigure:
    name: str
    batch: int
    images_per_s: float
    warmup_s: float
    peak_gib: float | None


def generation_figures(base: str, plan: Plan, results: Results, deadline: float) -> np.ndarray | None:
    """The plain diffusers pipeline against LivoPipeline (as built, then tuned), one batch of `plan` each, each
    pipeline alone on the device; saves the figures and returns LivoPipeline's images (for the judges)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    prompts, seeds = [PROMPT] * plan.generation_batch, list(range(plan.generation_batch))
    settings = GenerationSettings(steps=plan.generation_steps, guidance_scale=7.5, batch_size=plan.generation_batch)
    figures, images = results.data.setdefault("generation", []), []

    def measure(name: str, load: Callable[[], Callable[[], object]]) -> None:
        if figures and time.monotonic() > deadline:
            results.data["notes"].append(f"generation run {name!r} skipped: past the time budget")
            return results.save(results.data["notes"][-1])
        fresh_device(device)
        try:
            figure = _generation(name, load(), plan, device)
            figures.append(asdict(figure))
            results.save(f"{name}: {figure.images_per_s:.2f} images/s")
        except Exception as error:  # noqa: BLE001 (reported; the other pipelines are still measured)
            results.data["notes"].append(f"generation run {name!r} failed: {_short(error)}")
            results.save(results.data["notes"][-1])
        finally:
            fresh_device(device)

    def plain() -> Callable[[], object]:
        pipeline = StableDiffusionPipeline.from_pretrained(
            base, torch_dtype=dtype, safety_checker=None, requires_safety_checker=False
        ).to(device)
        use_reference_sampler(pipeline)
        pipeline.set_progress_bar_config(disable=True)
        return lambda: pipeline(
            prompts, num_inference_steps=plan.generation_steps, guidance_scale=7.5, output_type="np"
        )

    def livo(tuned: bool) -> Callable[[], object]:
        pipeline = LivoPipeline(load_base_pipeline(base, dtype=dtype, device=device))
        results.data["attention"] = type(next(iter(pipeline.base.unet.attn_processors.values()))).__name__
        if tuned:
            pipeline.base.unet = tune_unet(pipeline.base.unet, channels_last=True, compile_unet=plan.compile)
        return lambda: images.append(pipeline.generate(prompts, seeds, settings=settings))

    measure("plain StableDiffusionPipeline", plain)
    measure("LivoPipeline", lambda: livo(tuned=False))
    measure("LivoPipeline, channels_last" + (" + torch.compile" if plan.compile else ""), lambda: livo(tuned=True))
    return images[-1] if images else None


def _generation(name: str, fn: Callable[[], object], plan: Plan, device: torch.device) -> GenerationFigure:
    warmup = timed(fn, device)
    seconds = timed(fn, device, plan.timed_generations)
    return GenerationFigure(name, plan.generation_batch, plan.generation_batch / seconds, warmup, peak_gib(device))


def judge_seconds(images: np.ndarray) -> dict[str, float | str]:
    """Seconds per image of each sd15-world judge that loads on this machine, or why it does not."""
    pool, seconds = JudgePool("sd15"), {}
    for principle in load_principles().principles:
        name = principle.judges.get("sd15")
        if name is None or name in seconds:
            continue
        try:
            judge = pool.for_principle(principle)
            judge.judge(list(images[:1]), principle)  # loads its model
            start = time.perf_counter()
            judge.judge(list(images), principle)
            seconds[name] = (time.perf_counter() - start) / len(images)
        except Exception as error:  # noqa: BLE001 (a judge whose model or endpoint is missing here is reported)
            seconds[name] = f"not run here: {type(error).__name__}: {str(error)[:120]}"
    return seconds


def device_name() -> str:
    """A file-name slug of the device: "h100-80gb-hbm3" for an NVIDIA H100 80GB HBM3, "cpu-x86_64" on a CPU."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name().lower().removeprefix("nvidia").strip()
        return re.sub(r"[^a-z0-9]+", "-", name).strip("-")
    return f"cpu-{platform.machine()}"


class Results:
    """The run's figures, written to `<stem>.json` and `<stem>.md` after each one, so that a run cut short by its
    time limit still leaves every figure it measured."""

    def __init__(self, stem: Path, header: dict, log: Callable[[str], None]):
        self.stem, self.log = stem, log
        self.data = {**header, "notes": [], "training": [], "generation": []}
        stem.parent.mkdir(parents=True, exist_ok=True)

    def save(self, line: str | None = None) -> None:
        if line:
            self.log(line)
        self.stem.with_suffix(".json").write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        self.stem.with_suffix(".md").write_text(report(self.data))


def run(size: str, plan: Plan, out: Path, log: Callable[[str], None] = print) -> Path:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    started, clock = time.perf_counter(), time.monotonic()
    stem = out / f"gpu-{device_name()}" if size == "sd15" else out / f"gpu-{device_name()}-{size}"
    header = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({os.cpu_count()} cores)",
        "size": size,
        "torch": torch.__version__,
        "plan": asdict(plan),
        "compile": "torch.compile(unet, mode='default', dynamic=False)" if plan.compile else "not run",
    }
    results = Results(stem, header, log)
    with tempfile.TemporaryDirectory(prefix="livo-gpu-bench-") as scratch:
        work = Path(scratch)
        base = str(write_sd15_size(work / "base", device) if size == "sd15" else write_sd15_miniature(work / "base"))
        results.data["stages"] = write_bench_dataset(base, work / "dataset", plan.pairs, device)
        results.save(f"{size} components and the bench dataset written in {time.perf_counter() - started:.0f} s")
        training_figures(base, work / "dataset", work / "runs", plan, results, clock + plan.sweep_budget_s)
        images = generation_figures(base, plan, results, clock + plan.budget_s)
        if images is not None:
            results.data["stages"]["judges"] = judge_seconds(images)
    results.data["wall_s"] = round(time.perf_counter() - started, 1)
    results.save(f"whole run {results.data['wall_s']} s")
    return stem.with_suffix(".md")


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _verdict(value: float, target: float, on_gpu: bool) -> str:
    if not on_gpu:
        return "not assessed (not a GPU)"
    return "met" if value >= target else "missed"


def _gib(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "n/a (CPU)"


def report(result: dict) -> str:
    """The markdown page of one run (of what it has measured so far)."""
    on_gpu = result["size"] == "sd15" and "CPU" not in result["device"]
    lines = [
        f"# livo's speed on {result['device']} (`python -m bench.gpu --size {result['size']}`)",
        "",
        f"{result['size']} components with random weights (the architecture fixes the cost); torch {result['torch']}; "
        f"UNet attention processor {result.get('attention', '-')}; compile: {result['compile']}; whole run "
        f"{result.get('wall_s', 'cut short')} s. Every ratio compares figures of this one run.",
    ]
    if not on_gpu:
        lines += ["", "**A CPU run at tiny size: it tests the script. Its figures say nothing about a GPU.**"]
    if result["notes"]:
        lines += ["", *[f"- {note}" for note in result["notes"]]]
    lines += _training_section(result, on_gpu)
    lines += _generation_section(result, on_gpu)
    return "\n".join(lines) + "\n"


def _training_section(result: dict, on_gpu: bool) -> list[str]:
    training, plan = result["training"], result["plan"]
    lines = [
        "",
        "## Training step",
        "",
        f"Warm-up ({plan['warmup_steps']} steps: compilation, allocator) is timed apart; then the mean of "
        f"{plan['timed_steps']} steps. The release recipe is livo's trainer with fp16, gradient checkpointing and both "
        "PNGs decoded and VAE-encoded every step in the main process. `livo best`: the default plus each option that "
        "alone was more than 3% faster.",
        "",
        "| configuration | options | batch | pairs/s | step ms | warm-up s | peak GiB | vs release recipe | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    release = next((f for f in training if f["name"] == "release recipe"), None)
    for f in training:
        options = ", ".join(f"{k}={v}" for k, v in f["options"].items()) or "-"
        lines.append(
            f"| {f['name']} | {options} | {f['batch']} | {f['pairs_per_s']:.1f} | {f['step_ms']:.0f} | "
            f"{f['warmup_s']:.1f} | {_gib(f['peak_gib'])} | "
            f"{_ratio(f['pairs_per_s'], release['pairs_per_s']) if release else '-'} | {f['note']} |"
        )
    default = next((f for f in training if f["name"] == "livo default"), None)
    best = [f for f in training if f["name"] == "livo best" and not f["note"]]
    best_8 = next((f for f in best if f["batch"] == 8), None)
    if not (release and default and best_8 and release["pairs_per_s"]):
        return lines + ["", "(not every configuration was measured: no verdict)"]
    top = max(best, key=lambda f: f["pairs_per_s"])
    return lines + [
        "",
        f"- batch 8: livo best {best_8['pairs_per_s']:.1f} pairs/s, "
        f"{_ratio(best_8['pairs_per_s'], release['pairs_per_s'])} the release recipe and "
        f"{_ratio(best_8['pairs_per_s'], default['pairs_per_s'])} livo's default "
        f"(targets on an H200: >= 90 pairs/s, {_verdict(best_8['pairs_per_s'], 90, on_gpu)}; >= 7x, "
        f"{_verdict(best_8['pairs_per_s'] / release['pairs_per_s'], 7, on_gpu)}).",
        f"- best batch: {top['batch']} of those measured, {top['pairs_per_s']:.1f} pairs/s, peak "
        f"{_gib(top['peak_gib'])} GiB.",
    ]


def _generation_section(result: dict, on_gpu: bool) -> list[str]:
    generation, plan, stages = result["generation"], result["plan"], result.get("stages", {})
    lines = [
        "",
        "## Generation",
        "",
        f"DPM-Solver++ {plan['generation_steps']} steps, CFG 7.5, batch {plan['generation_batch']}, fp16 on a GPU; "
        "each pipeline alone on the device; one warm-up call timed apart. Both decode a batch's latents in one VAE "
        "call.",
        "",
        "| pipeline | batch | images/s | warm-up s | peak GiB | vs plain |",
        "|---|---|---|---|---|---|",
    ]
    plain = next((f for f in generation if f["name"].startswith("plain")), None)
    for f in generation:
        lines.append(
            f"| {f['name']} | {f['batch']} | {f['images_per_s']:.2f} | {f['warmup_s']:.1f} | {_gib(f['peak_gib'])} | "
            f"{_ratio(f['images_per_s'], plain['images_per_s']) if plain else '-'} |"
        )
    livo = [f for f in generation if f["name"].startswith("LivoPipeline")]
    if not (plain and livo and "png_write_s" in stages):
        return lines + ["", "(generation not fully measured: no verdict, no projection)"]
    fastest = max(livo, key=lambda f: f["images_per_s"])
    lines += [
        "",
        f"- fastest livo: {_ratio(fastest['images_per_s'], plain['images_per_s'])} the plain pipeline (target >= 1.8x, "
        f"{_verdict(fastest['images_per_s'] / plain['images_per_s'], 1.8, on_gpu)}).",
        "",
        "## Build stages per image, and an 86k-pair build",
        "",
        "| stage | s per image |",
        "|---|---|",
        f"| generation (fastest livo) | {1 / fastest['images_per_s']:.4f} |",
    ]
    per_image = 1 / fastest["images_per_s"] + stages["png_write_s"] + stages["latent_write_s"]
    for name, value in stages.get("judges", {}).items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        lines.append(f"| judge {name} | {shown} |")
        per_image += value if isinstance(value, float) else 0.0
    return lines + [
        f"| PNG write | {stages['png_write_s']:.4f} |",
        f"| VAE encode + latent write | {stages['latent_write_s']:.4f} |",
        "",
        f"Projected build of {PAPER_PAIRS:,} pairs ({PAPER_IMAGES:,} images), the stages one after another in one "
        f"process, the judges that ran here only, and every image kept (a real build discards the images its judges "
        f"reject: divide by the share kept): **{PAPER_IMAGES * per_image / 3600:.2f} h** ({per_image:.4f} s per "
        f"image); the plain pipeline alone would take {PAPER_IMAGES / plain['images_per_s'] / 3600:.2f} h to generate "
        "them.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("auto", "sd15", "tiny"), default="auto", help="auto: sd15 on a GPU")
    parser.add_argument("--quick", action="store_true", help="a few steps of each (the CPU test's plan)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    size = args.size if args.size != "auto" else ("sd15" if torch.cuda.is_available() else "tiny")
    plan = QUICK if args.quick else Plan(compile=torch.cuda.is_available())
    print(run(size, plan, args.out, log=lambda line: print(line, flush=True)))


if __name__ == "__main__":
    main()
