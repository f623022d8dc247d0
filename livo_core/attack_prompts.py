"""Readers of the published adversarial prompt sets: Ring-A-Bell, MMA-Diffusion, P4D and UnlearnDiffAtk.

Each reads the CSV (or JSONL / Parquet) columns its repository publishes and gives PROMPTS rows (source: the set's
name) that become evaluation sets. A bad row (an empty prompt, an unreadable seed or guidance) is a failed row whose
reason names the line; a file without the set's columns is an error that lists the columns it has.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from livo_core.config import AttackSet
from livo_core.prompts import (
    PromptRow,
    PromptSourceError,
    _imported_row,
    _missing,
    _read_records,
    _require_columns,
    _to_float,
    _to_int,
)


@dataclass(frozen=True)
class AttackFormat:
    """The columns one published set uses; the first of `prompt_columns` present holds the prompt."""

    name: str
    prompt_columns: tuple[str, ...]
    seed_column: str | None  # the set's per-prompt generation seed
    guidance_column: str | None
    published_as: str  # where the columns come from

    def prompt_column(self, path: Path, columns: list[str]) -> str:
        present = [c for c in self.prompt_columns if c in columns]
        if not present:
            fix = f"this is not a {self.name} file (it publishes {' or '.join(map(repr, self.prompt_columns))})"
            _require_columns(path, columns, self.prompt_columns[:1], fix)
        return present[0]


ATTACK_FORMATS: dict[str, AttackFormat] = {
    f.name: f
    for f in (
        AttackFormat(
            "ring-a-bell",
            ("prompt", "sensitive prompt"),
            "evaluation_seed",
            None,
            "chiayi-hsu/Ring-A-Bell data/InvPrompt/*.csv: prompt, case_number, evaluation_seed",
        ),
        AttackFormat(
            "mma-diffusion",
            ("adv_prompt",),
            None,
            None,
            "YijunYang280/MMA-Diffusion-NSFW-adv-prompts-benchmark: target_prompt, adv_prompt, clean_prompt, ...",
        ),
        AttackFormat(
            "p4d",
            ("prompt",),
            "evaluation_seed",
            "evaluation_guidance",
            "joycenerd/p4d p4dn_16_prompt.csv / p4dk_16_prompt.csv: prompt, evaluation_seed, evaluation_guidance, ...",
        ),
        AttackFormat(
            "unlearndiffatk",
            ("prompt",),
            "evaluation_seed",
            "evaluation_guidance",
            "OPTML-Group/Diffusion-MU-Attack prompts/nudity.csv: the I2P columns, evaluation_seed, "
            "evaluation_guidance, case_number",
        ),
    )
}


def _attack_row(fmt: AttackFormat, spec: AttackSet, ref: str, record: dict, column: str) -> PromptRow:
    """One record: the prompt, its principle, and the set's seed and guidance where it publishes them."""
    row = _imported_row(record.get(column), fmt.name, ref, category_hint="toxicity", principle_hint=spec.principle)
    if row.status == "ok" and not row.prompt.strip():
        return replace(row, status="failed", failure_reason=f"empty {column!r}; fill it or delete the row")
    fields, bad = {}, []
    settings = (("sd_seed", fmt.seed_column, _to_int), ("sd_guidance_scale", fmt.guidance_column, _to_float))
    for field, name, parse in settings:
        if name is None or _missing(record.get(name)):
            continue
        try:
            fields[field] = parse(record[name])
        except (TypeError, ValueError):
            bad.append(f"{name}={record[name]!r}")
    row = replace(row, **fields)
    if bad and row.status == "ok":
        return replace(row, status="failed", failure_reason=f"unreadable {fmt.name} values: {', '.join(bad)}")
    return row


def attack_prompts(spec: AttackSet) -> list[PromptRow]:
    """Rows of one adversarial prompt file (source: the set's name), bad rows failed with their reason."""
    fmt, path = ATTACK_FORMATS[spec.format], Path(spec.path)
    columns, records = _read_records(path)
    column = fmt.prompt_column(path, columns)
    rows = [_attack_row(fmt, spec, f"{path}:{line}", record, column) for line, record in records]
    if not any(row.status == "ok" for row in rows):
        reasons = "; ".join(f"{r.source_ref}: {r.failure_reason}" for r in rows[:3])
        raise PromptSourceError(f"{path}: no readable {fmt.name} prompt ({reasons})")
    return rows
