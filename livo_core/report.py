"""The train-livo report: comparison table, metric bars per method, training curves, image grids, markdown."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from livo_core.training import METRICS_FILE  # noqa: E402

HEADLINE = (
    ("d1", "D1 (bias, lower is better)"),
    ("toxic_ratio", "toxic ratio (lower is better)"),
    ("adherence", "prompt adherence (higher is better)"),
)
CURVES = (
    ("loss", "training loss"),
    ("margin_w", "aligned-image margin (Lp_w - Lr_w)"),
    ("margin_l", "violating-image margin (Lp_l - Lr_l)"),
    ("implicit_acc", "implicit accuracy"),
)


def read_metrics(train_dir: str | Path) -> list[dict]:
    """The JSONL training log of one run."""
    path = Path(train_dir) / METRICS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def methods_table(results: dict[str, dict]) -> str:
    """Markdown: headline metrics per method, mean ± std over seeds, change against the base model; CLIP score and
    FID columns where they were measured."""
    base = results["base"]["summary"]
    quality = not math.isnan(base.get("clip_score", math.nan))
    header = ["method", "D1 (bias)", "toxic ratio", "adherence", "value found"]
    header += ["CLIP score", "FID (CLIP) vs base"] if quality else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        s = result["summary"]
        cells = [
            _with_spread(s, "d1") + _relative(s["d1"], base["d1"], name),
            _with_spread(s, "toxic_ratio") + _relative(s["toxic_ratio"], base["toxic_ratio"], name),
            _adherence(s["adherence"], base["adherence"], name),
            f"{s['value_found']:.2f}" if result["method"]["value"] == "retrieved" else "-",
        ]
        if quality:
            cells += [f"{s['clip_score']:.2f}", f"{s['fid_clip']:.3f}" if "fid_clip" in s else "-"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _adherence(value: float, base: float, name: str) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3f}" + ("" if name == "base" else f" ({100 * (value - base):+.1f} pts)")


def _with_spread(summary: dict, key: str) -> str:
    return f"{summary[key]:.3f} ± {summary[f'{key}_std']:.3f}"


def _relative(value: float, base: float, name: str) -> str:
    return "" if name == "base" or base == 0 else f" ({100 * (value - base) / base:+.0f}%)"


def metric_bars(results: dict[str, dict], path: Path) -> Path:
    """One bar chart per headline metric, a bar per method, error bars = std over seeds."""
    names = list(results)
    fig, axes = plt.subplots(1, len(HEADLINE), figsize=(5 * len(HEADLINE), 4))
    for ax, (key, title) in zip(axes, HEADLINE, strict=True):
        values = [results[n]["summary"][key] for n in names]
        errors = [results[n]["summary"][f"{key}_std"] for n in names]
        ax.bar(range(len(names)), values, yerr=errors, color=plt.cm.tab10(np.arange(len(names))))
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_curves(train_dirs: dict[str, str | Path], path: Path) -> Path:
    """Loss, the two margins and implicit accuracy over steps, one line per loss: how fast each converges."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.5 * len(CURVES), 3.6))
    for loss, train_dir in train_dirs.items():
        records = read_metrics(train_dir)
        steps = [r["step"] for r in records]
        for ax, (key, title) in zip(axes, CURVES, strict=True):
            ax.plot(steps, [r[key] for r in records], label=loss)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("step")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_summary(train_dirs: dict[str, str | Path]) -> list[dict]:
    """The last logged record of each run (a table artifact)."""
    rows = []
    for loss, train_dir in train_dirs.items():
        last = read_metrics(train_dir)[-1]
        rows.append({"loss": loss, **{k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()}})
    return rows


def image_grid(rows: list[np.ndarray], path: Path, scale: int = 3) -> Path:
    """Stack rows of images (each (N, H, W, 3) uint8) into one PNG, enlarged `scale` times without smoothing."""
    grid = np.concatenate([np.concatenate(list(row), axis=1) for row in rows], axis=0)
    image = Image.fromarray(grid)
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(path)
    return path


def write_report(out_dir: Path, results: dict[str, dict], figures: dict[str, Path], notes: list[str]) -> Path:
    """report.md next to the figures: the comparison table, the figures, the protocol notes."""
    lines = ["# LiVO training report", "", methods_table(results), *notes, ""]
    for title, figure in figures.items():
        lines += [f"## {title}", "", f"![{title}]({Path(figure).name})", ""]
    path = Path(out_dir) / "report.md"
    path.write_text("\n".join(lines))
    return path
