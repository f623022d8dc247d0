"""The finished preference dataset: split by prompt, streamed to Parquet, validated, described by a card."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from livo_core.hf_dataset import DATA_DIR, front_matter
from livo_core.schema import PAIRS, read_file_metadata, read_metadata, read_table, write_batches
from livo_core.storage import LatentCache

SPLITS = ("train", "val", "test")


def assign_split(prompt_id: str, fractions: Sequence[float] = (0.9, 0.05, 0.05)) -> str:
    """A split fixed by the prompt id alone, so no prompt ever appears in two splits."""
    position = int(hashlib.sha256(prompt_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    cumulative = 0.0
    for name, share in zip(SPLITS, fractions, strict=True):
        cumulative += share
        if position < cumulative:
            return name
    return SPLITS[-1]


def split_of(prompt: dict, fractions: Sequence[float]) -> str:
    """A PROMPTS row's split: by its group (every phrasing of a template item together), else by its id."""
    return assign_split(prompt.get("group") or prompt["prompt_id"], fractions)


def write_pairs(batches: Iterable[list[dict]], root: Path, meta: dict) -> Path:
    """Stream PAIRS rows to `root/pairs.parquet` (never the whole dataset in memory)."""
    path = root / "pairs.parquet"
    write_batches(batches, path, PAIRS, meta)
    return path


@dataclass
class ValidationReport:
    pairs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def validate_dataset(root: Path, batch_rows: int = 10_000) -> ValidationReport:
    """Schema, files present (images and latents), unique pair ids, no prompt in two splits."""
    path, report = root / "pairs.parquet", ValidationReport()
    read_table(path, PAIRS).slice(0, 0)  # schema and version check
    seen_pairs: set[str] = set()
    split_of: dict[str, str] = {}
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
        for row in batch.to_pylist():
            report.pairs += 1
            if row["pair_id"] in seen_pairs:
                report.problems.append(f"duplicate pair id {row['pair_id']}")
            seen_pairs.add(row["pair_id"])
            if split_of.setdefault(row["prompt_id"], row["split"]) != row["split"]:
                report.problems.append(
                    f"prompt {row['prompt_id']} is in {split_of[row['prompt_id']]} and {row['split']}"
                )
            for role in ("aligned", "violating"):
                if not (root / row[f"{role}_image"]).is_file():
                    report.problems.append(f"pair {row['pair_id']}: missing {role} image {row[f'{role}_image']}")
                vae = json.loads(row["generation"]).get("vae")
                if vae is None or not LatentCache(root, vae).path(row[f"{role}_sha256"]).is_file():
                    report.problems.append(f"pair {row['pair_id']}: missing {role} latent (VAE {vae})")
    return report


def dataset_card(root: Path) -> str:
    """README.md of a dataset: counts per principle and split, provenance and licences, from the table itself."""
    table = read_table(root / "pairs.parquet", PAIRS)
    rows = table.select(
        [
            "principle_id",
            "category",
            "split",
            "base_model",
            "judge_name",
            "judge_version",
            "annotator",
            "annotator_version",
            "target_class",
        ]
    ).to_pylist()
    counts = Counter((r["category"], r["principle_id"], r["split"]) for r in rows)
    per_split = Counter(r["split"] for r in rows)
    lines = [
        front_matter({split: per_split[split] for split in SPLITS}, sorted({r["base_model"] for r in rows})),
        "# livo preference dataset",
        "",
        f"{len(rows)} pairs (prompt, principle, aligned image, violating image).",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'pairs = load_dataset("path/to/this/folder")  # or the Hub repo id; splits train, val, test',
        'pairs["train"][0]["aligned_image"]  # a PIL image; every provenance column is kept',
        "```",
        "",
        f"`{DATA_DIR}/` holds the splits with the images embedded (the Hugging Face layout); `pairs.parquet`, "
        "`images/` and `latents/` are livo's own (training reads them).",
        "",
        "| category | principle | " + " | ".join(SPLITS) + " |",
        "|---|---|" + "---|" * len(SPLITS),
    ]
    for category, principle in sorted({(c, p) for c, p, _ in counts}):
        lines.append(
            f"| {category} | {principle} | " + " | ".join(str(counts[(category, principle, s)]) for s in SPLITS) + " |"
        )
    provenance = {
        "base models": sorted({r["base_model"] for r in rows}),
        "judges": sorted({f"{r['judge_name']} {r['judge_version']}" for r in rows}),
        "annotators": sorted({f"{r['annotator']} {r['annotator_version']}" for r in rows}),
    }
    lines += debias_section(read_metadata(table).get("debias_plans", []), rows)
    lines += ["", "## Provenance", ""] + [f"- {k}: {', '.join(v)}" for k, v in provenance.items()]
    lines += ["", "## Schema", "", "| column | type |", "|---|---|"] + [f"| {f.name} | {f.type} |" for f in PAIRS]
    lines += [
        "",
        f"Metadata: `{read_metadata(table)}`",
        "",
        "## Licences",
        "",
        "Images are outputs of the base models above and follow their licences; livo code is MIT. The dataset "
        "contains prompts describing harmful content on purpose (as violating examples): use it for alignment "
        "research only.",
    ]
    return "\n".join(lines) + "\n"


def debias_section(plans: list[dict], rows: list[dict]) -> list[str]:
    """The card's table of debias plans: per bias principle (and family), p, the value share, q and the classes the
    kept pairs' aligned images show."""
    if not plans:
        return []
    kept = Counter((r["principle_id"], r["target_class"]) for r in rows if r["target_class"])
    lines = [
        "",
        "## Debias plans",
        "",
        "p: the base model's class shares, measured on the judged violating images; s: the share of a prompt's "
        "images that get the value at inference; q: the aligned targets, chosen so that (1 - s) p + s q is as close "
        "to uniform as s allows. Only classes with p > 1/K are ever the violating side of a pair, and never toward "
        "their own class, so the targets the pairs can carry (q reached) differ from q where that is impossible "
        "(with two classes every aligned image shows the minority class); mixture: (1 - s) p + s q reached, what many "
        "images would show if the value images follow q reached.",
        "",
        "| principle | family | base images | s | class | p | q | q reached | mixture | aligned images in pairs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for plan in plans:
        total = sum(kept[(plan["principle_id"], c)] for c in plan["p"]) or 1
        for c in plan["p"]:
            share = f"{kept[(plan['principle_id'], c)] / total:.3f}" if plan["family"] is None else "-"
            lines.append(
                f"| {plan['principle_id']} | {plan['family'] or 'all'} | {plan['images']} | {plan['share']:.3f} | "
                f"{c} | {plan['p'][c]:.3f} | {plan['q'][c]:.3f} | {plan['reachable_q'][c]:.3f} | "
                f"{plan['expected_mixture'][c]:.3f} | {share} |"
            )
    return lines


def value_shares(root: str | Path) -> dict[str, float]:
    """The value share each bias principle's debias plan was made for (read from pairs.parquet's metadata)."""
    plans = read_file_metadata(Path(root) / "pairs.parquet").get("debias_plans", [])
    return {plan["principle_id"]: plan["share"] for plan in plans if plan["family"] is None}


class WrongBaseModelError(ValueError):
    """A dataset built with one base model is used to train for another."""


def check_base_model(root: str | Path, base_model: str, weights: str) -> None:
    """Refuse a dataset whose images another base model made: the pairs' recorded weights hash (or, where none is
    recorded, the model name) must be `base_model`'s."""
    table = read_table(Path(root) / "pairs.parquet", PAIRS).select(["base_model", "generation"])
    built = {(r["base_model"], json.loads(r["generation"]).get("weights")) for r in table.to_pylist()}
    wrong = sorted((name, w) for name, w in built if (w or name) != (weights if w else base_model))
    if wrong:
        name, other = wrong[0]
        raise WrongBaseModelError(
            f"{root} was built with base model {name!r} (weights {other or 'not recorded'}), not {base_model!r} "
            f"(weights {weights}): its latents and preferences belong to that model. Train with base_model={name!r}, "
            f"or build a dataset with {base_model!r}"
        )
