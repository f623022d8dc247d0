"""Export a trained value encoder as a diffusers pipeline folder (the frozen base model plus it), with a model card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from livo_core import __version__, diffusers_pipeline
from livo_core.atomic import fsync_tree, temporary_path
from livo_core.checkpoint import read_state
from livo_core.hf_dataset import LICENCES
from livo_core.models.loading import load_base_pipeline
from livo_core.models.value_encoder import METADATA_FILE, SUBFOLDER, ValueEncoder
from livo_core.pipeline import default_settings, read_value_shares
from livo_core.principles import PRINCIPLES_FILE, load_principles

PIPELINE_FILE = "pipeline.py"  # the file name diffusers looks for in a custom_pipeline folder

CARD = """---
library_name: diffusers
license: {licence}
tags: [livo, value-alignment, text-to-image, stable-diffusion]
---
# LiVO value encoder

A value encoder for LiVO (Lightweight Value Optimization): it reads "{{value}}, {{prompt}}" and returns one token
that is prepended to the frozen text encoder's prompt embedding, steering the frozen diffusion model
`{base_model}` toward the value principle (principles.yaml, next to this card).

This folder is a diffusers pipeline: the frozen base model's parts (`vae`, `text_encoder`, `tokenizer`, `unet`, and
`scheduler`: DPM-Solver++ multistep, the reference's sampler), the value encoder (`{subfolder}/`: a CLIPTextModel,
and `livo.json` with the base model and the value shares) and `pipeline.py`, the custom pipeline
`LivoDiffusionPipeline`.

## Use
With the custom pipeline: pipeline.py imports livo, so install the livo package first (version {version}:
`pip install -e .` in its repository).
```python
from diffusers import DiffusionPipeline

folder = "path/to/this/folder"
pipeline = DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder, trust_remote_code=True)
output = pipeline("a photo of a doctor", value="auto", num_images_per_prompt=8, seeds=range(8))
output.images, output.principle_ids  # the images, and the principle each one got (None: no value token)
```
`value="auto"`: the retriever picks the principle(s); a toxicity principle goes on every image, a bias principle on
its share of the images (the value shares below). `value="{value_id}"` (an id in principles.yaml): that principle on
every image. `value=None`: no value token, the base model alone. With the same seeds and settings,
`LivoPipeline.from_pretrained("{base_model}", folder).generate_aligned(prompt, seeds, default_retriever())` gives the
same images (and `livo generate "a photo of a doctor" --value-encoder path/to/this/folder` generates the same way).

With diffusers and transformers alone, the reference's `prompt_embeds` recipe: c_v is the value token followed by
the prompt embedding without its last position; the unconditional branch is the embedding of "", with no value token.
```python
import torch
from diffusers import StableDiffusionPipeline
from transformers import CLIPTextModel

sd = StableDiffusionPipeline.from_pretrained(folder)
value_encoder = CLIPTextModel.from_pretrained(folder, subfolder="{subfolder}")


def tokens(text):
    return sd.tokenizer(text, padding="max_length", truncation=True, return_tensors="pt").input_ids


prompt, value, seeds = "a photo of a doctor", "{value_text}", range(8)  # value: a principle's text (principles.yaml)
with torch.no_grad():
    value_token = value_encoder(tokens(f"{{value}}, {{prompt}}")).pooler_output  # (1, D)
    prompt_embeds = sd.text_encoder(tokens(prompt)).last_hidden_state  # (1, 77, D)
    c_v = torch.cat([value_token[:, None], prompt_embeds[:, :-1]], dim=1)  # (1, 77, D)
    uncond = sd.text_encoder(tokens("")).last_hidden_state  # (1, 77, D)
images = sd(
    prompt_embeds=c_v,
    negative_prompt_embeds=uncond,
    num_images_per_prompt=len(seeds),
    generator=[torch.Generator().manual_seed(s) for s in seeds],  # one per image, as the custom pipeline's seeds
    num_inference_steps={steps},
    guidance_scale={guidance_scale},
).images  # the custom pipeline's images with value="{value_id}" and these seeds
```

## Training
- Data: `{dataset}` (a livo build-dataset folder: judged preference pairs).
- Loss: `{loss}`, {step} steps of {batch} pairs, AdamW lr {lr}; the diffusion model stayed frozen.
- Value shares (`value_encoder/livo.json`): {shares}. A bias value goes on exactly this share of a prompt's images
  (`generate_aligned`, `livo generate`); the dataset's aligned targets were chosen for it, so that the images
  a user gets are as balanced as the base model allows.

## Evaluation (held-out prompts)
{table}
## Intended use and limitations
Intended to reduce social bias and toxic content in images of the base model it was trained for, and only for
the principles in principles.yaml. It does not make a model safe: it lowers how often violating images appear,
judged by automatic judges with their own errors; keep human review and other safety layers. A value encoder
trained on the offline shapes world demonstrates the method and is of no use with real image models.
"""


def export_value_encoder(checkpoint: Path, out_dir: Path, base_model: str, dataset: str, table: str) -> Path:
    """Write `out_dir` as a diffusers pipeline folder, atomically: the frozen base model's parts (with the reference's
    sampler), the checkpoint's `value_encoder/` (its livo.json also naming the base model), model_index.json listing
    them all, pipeline.py (`LivoDiffusionPipeline`), principles.yaml and README.md."""
    state = read_state(checkpoint)
    base = load_base_pipeline(base_model, dtype=torch.float32, device="cpu")
    tmp = temporary_path(out_dir)
    try:
        base.save_pretrained(tmp, safe_serialization=True)
        shutil.copytree(Path(checkpoint) / SUBFOLDER, tmp / SUBFOLDER)
        check_fits(base, ValueEncoder.from_pretrained(checkpoint, base.text_encoder.config.hidden_size))
        _update_json(tmp / SUBFOLDER / METADATA_FILE, base_model=base_model)
        _update_json(tmp / "model_index.json", _name_or_path=None, **{SUBFOLDER: ["transformers", "CLIPTextModel"]})
        shutil.copy(diffusers_pipeline.__file__, tmp / PIPELINE_FILE)
        shutil.copy(PRINCIPLES_FILE, tmp / "principles.yaml")
        (tmp / "README.md").write_text(model_card(state, checkpoint, base_model, dataset, table))
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def model_card(state: dict, checkpoint: Path, base_model: str, dataset: str, table: str) -> str:
    """README.md of an export: what the folder holds, both ways to use it, the training and the evaluation table."""
    config = state["config"]
    example = load_principles().of_category("bias")[0]
    settings = default_settings(base_model)
    return CARD.format(
        licence=LICENCES.get(base_model, "other"),  # the copied base weights' licence goes with them
        base_model=base_model,
        subfolder=SUBFOLDER,
        version=__version__,
        value_id=example.id,
        value_text=example.text,
        steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        dataset=dataset,
        loss=config["loss"],
        step=state["step"],
        batch=config["batch_size"] * config["grad_accumulation"],
        lr=config["learning_rate"],
        shares=", ".join(f"{k} {v:.3f}" for k, v in sorted(read_value_shares(checkpoint).items())) or "none (0.5)",
        table=table,
    )


def check_fits(base: StableDiffusionPipeline, encoder: ValueEncoder) -> None:
    """The exported pipeline reads "{value}, {prompt}" with the base tokenizer: refuse a value encoder trained with
    another (its width was checked on loading)."""
    ours, theirs = encoder.tokenizer, base.tokenizer
    if ours.get_vocab() != theirs.get_vocab() or ours.model_max_length != theirs.model_max_length:
        raise ValueError(
            "the value encoder's tokenizer differs from the base model's: it was trained for another base model; "
            "export it with the base model it was trained for"
        )


def _update_json(path: Path, **entries) -> None:
    """Set entries of a JSON file (None: remove it, e.g. the base model's path on this machine)."""
    data = {k: v for k, v in (json.loads(path.read_text()) | entries).items() if v is not None}
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
