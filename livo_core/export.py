"""Export a trained value encoder in the Hugging Face layout, with a model card."""

from __future__ import annotations

import shutil
from pathlib import Path

from livo_core.atomic import fsync_tree, temporary_path
from livo_core.checkpoint import read_state
from livo_core.models.value_encoder import SUBFOLDER
from livo_core.pipeline import read_value_shares
from livo_core.principles import PRINCIPLES_FILE

CARD = """---
library_name: livo
tags: [livo, value-alignment, text-to-image, stable-diffusion]
---
# LiVO value encoder

A value encoder for LiVO (Lightweight Value Optimization): it reads "{{value}}, {{prompt}}" and returns one token
that is prepended to the frozen text encoder's prompt embedding, steering the frozen diffusion model
`{base_model}` toward the value principle (principles.yaml, next to this card).

## Use
```python
from livo_core.pipeline import LivoPipeline
from livo_core.retrieval import default_retriever

pipeline = LivoPipeline.from_pretrained("{base_model}", "path/to/this/folder")
images, values, retrieval = pipeline.generate_aligned("a photo of a doctor", seeds=range(8),
                                                      retriever=default_retriever())
```
or `livo generate "a photo of a doctor" --value-encoder path/to/this/folder`. The weights alone load with
`CLIPTextModel.from_pretrained(folder, subfolder="{subfolder}")`.

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
    """Copy the checkpoint's `value_encoder/` and principles.yaml to `out_dir` and write README.md; atomic."""
    state = read_state(checkpoint)
    config = state["config"]
    tmp = temporary_path(out_dir)
    shutil.copytree(Path(checkpoint) / SUBFOLDER, tmp / SUBFOLDER)
    shutil.copy(PRINCIPLES_FILE, tmp / "principles.yaml")
    card = CARD.format(
        base_model=base_model,
        subfolder=SUBFOLDER,
        dataset=dataset,
        loss=config["loss"],
        step=state["step"],
        batch=config["batch_size"] * config["grad_accumulation"],
        lr=config["learning_rate"],
        shares=", ".join(f"{k} {v:.3f}" for k, v in sorted(read_value_shares(checkpoint).items())) or "none (0.5)",
        table=table,
    )
    (tmp / "README.md").write_text(card)
    fsync_tree(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir
