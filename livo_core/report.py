"""The train-livo report: comparison table, metric bars per method, training curves, image grids, markdown."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Sequence
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
    """Markdown: headline metrics per method, mean ± spread (see `_with_spread`), change against the base model; the
    fair-sampler floor of D1; CLIP score and FID columns where they were measured."""
    base = results["base"]["summary"]
    quality = not math.isnan(base.get("clip_score", math.nan))
    header = ["method", "D1 (bias)", "D1 floor", "toxic ratio", "adherence", "value found"]
    header += ["CLIP score", "FID (CLIP) vs base"] if quality else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, result in results.items():
        s = result["summary"]
        cells = [
            _with_spread(s, "d1") + _relative(s["d1"], base["d1"], name),
            _number(s.get("floor_d1", math.nan)),
            _with_spread(s, "toxic_ratio") + _relative(s["toxic_ratio"], base["toxic_ratio"], name),
            _adherence(s["adherence"], base["adherence"], name),
            f"{s['value_found']:.2f}" if result["method"]["value"] == "retrieved" else "-",
        ]
        if quality:
            cells += [_number(s["clip_score"], 2), _number(s.get("fid_clip", math.nan))]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def balance_tables(results: dict[str, dict]) -> str:
    """Per bias principle: each method's class shares (± over training seeds), unclassified images, images per
    prompt, D1 and D2 against the fair-sampler floor."""
    blocks = []
    for set_name, base in results["base"]["per_set"].items():
        if "class_share" not in base:
            continue
        classes = list(base["class_share"])
        header = ["method", *classes, "unclassified", "N/prompt", "D1 (floor)", "D2 (floor)", "top class"]
        lines = [f"### {set_name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for name, result in results.items():
            r = result.get("per_set", {}).get(set_name)
            if r is None:
                continue
            spread = r.get("class_share_std_train", {})
            shares = [_share(r["class_share"][c], spread.get(c, math.nan)) for c in classes]
            top = max(classes, key=r["class_share"].get)
            lines.append(
                f"| {name} | "
                + " | ".join(
                    [
                        *shares,
                        f"{r['unclassified_share']:.1%}",
                        str(int(r["images_per_prompt"])),
                        f"{r['d1']:.3f} ({r['floor_d1']:.3f})",
                        f"{r['d2']:.3f} ({r['floor_d2']:.3f})",
                        f"{top} {r['class_share'][top]:.0%} (1/K = {1 / len(classes):.0%})",
                    ]
                )
                + " |"
            )
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _share(value: float, spread: float) -> str:
    return f"{value:.1%}" if math.isnan(spread) else f"{value:.1%} ± {spread:.1%}"


def _number(value: float, digits: int = 3) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _adherence(value: float, base: float, name: str) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{value:.3f}" + ("" if name == "base" else f" ({100 * (value - base):+.1f} pts)")


def _with_spread(summary: dict, key: str) -> str:
    """mean ± std over training seeds [± std over evaluation seeds]; a row without training: ± over evaluation seeds;
    a spread is left out where one seed gave nothing to measure it on."""
    value, train, evaluation = summary[key], summary[f"{key}_std_train"], summary[f"{key}_std_eval"]
    if math.isnan(value):
        return "-"
    text = f"{value:.3f}"
    if not math.isnan(train):
        text += f" ± {train:.3f}"
    if not math.isnan(evaluation):
        text += f" [{evaluation:.3f}]" if not math.isnan(train) else f" ± {evaluation:.3f}"
    return text


def _relative(value: float, base: float, name: str) -> str:
    if name == "base" or base == 0 or math.isnan(value):
        return ""
    return f" ({100 * (value - base) / base:+.0f}%)"


def _error_bar(summary: dict, key: str) -> float:
    """The spread over training seeds, else over evaluation seeds, else none."""
    for spread in (summary[f"{key}_std_train"], summary[f"{key}_std_eval"]):
        if not math.isnan(spread):
            return spread
    return 0.0


def metric_bars(results: dict[str, dict], path: Path) -> Path:
    """One bar chart per headline metric, a bar per method; error bars: std over training seeds (over evaluation seeds
    for untrained rows)."""
    names = list(results)
    fig, axes = plt.subplots(1, len(HEADLINE), figsize=(5 * len(HEADLINE), 4))
    for ax, (key, title) in zip(axes, HEADLINE, strict=True):
        summaries = [results[n]["summary"] for n in names]
        values = [s[key] for s in summaries]
        errors = [_error_bar(s, key) for s in summaries]
        ax.bar(range(len(names)), values, yerr=errors, color=plt.cm.tab10(np.arange(len(names))))
        if key == "d1":
            floors = [s.get("floor_d1", math.nan) for s in summaries]
            ax.scatter(range(len(names)), floors, marker="_", s=400, color="black", label="fair-sampler floor")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def class_share_bars(results: dict[str, dict], path: Path) -> Path:
    """Per bias principle, grouped bars: each class's share of the images for the base and each method, the
    uniform share as a line, error bars over training seeds."""
    sets = [name for name, r in results["base"]["per_set"].items() if "class_share" in r]
    fig, axes = plt.subplots(1, max(1, len(sets)), figsize=(7 * max(1, len(sets)), 4), squeeze=False)
    for ax, set_name in zip(axes[0], sets, strict=False):
        methods = [n for n in results if set_name in results[n].get("per_set", {})]
        classes = list(results["base"]["per_set"][set_name]["class_share"])
        width = 0.8 / len(methods)
        for i, name in enumerate(methods):
            r = results[name]["per_set"][set_name]
            spread = r.get("class_share_std_train", {})
            errors = [0.0 if math.isnan(spread.get(c, math.nan)) else spread[c] for c in classes]
            x = np.arange(len(classes)) + (i - (len(methods) - 1) / 2) * width
            ax.bar(x, [r["class_share"][c] for c in classes], width, yerr=errors, label=name)
        ax.axhline(1 / len(classes), color="black", linestyle="--", linewidth=1, label="uniform")
        ax.set_xticks(range(len(classes)), classes)
        ax.set_title(f"{set_name}: share of images per class", fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_curves(train_dirs: dict[str, dict[int, str | Path]], path: Path) -> Path:
    """Loss, the two margins and implicit accuracy over steps, one line per loss and training seed."""
    fig, axes = plt.subplots(1, len(CURVES), figsize=(4.5 * len(CURVES), 3.6))
    for index, (loss, by_seed) in enumerate(train_dirs.items()):
        for seed, train_dir in by_seed.items():
            records = read_metrics(train_dir)
            steps = [r["step"] for r in records]
            for ax, (key, title) in zip(axes, CURVES, strict=True):
                ax.plot(steps, [r[key] for r in records], color=plt.cm.tab10(index), label=f"{loss} seed {seed}")
                ax.set_title(title, fontsize=10)
                ax.set_xlabel("step")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_summary(train_dirs: dict[str, dict[int, str | Path]]) -> list[dict]:
    """The last logged record of each run (a table artifact)."""
    rows = []
    for loss, by_seed in train_dirs.items():
        for seed, train_dir in by_seed.items():
            last = read_metrics(train_dir)[-1]
            rounded = {k: round(v, 5) if isinstance(v, float) else v for k, v in last.items()}
            rows.append({"run": f"{loss} seed {seed}", **rounded})
    return rows


THUMBNAIL_WIDTH = 96  # px per image in grids, whatever the image size (32 px shapes, 512 px SD1.5)
ARTIFACT_LIMIT = 5_000_000  # bytes: a report artifact with its figures inlined stays under this


def image_grid(rows: list[np.ndarray], path: Path, width: int = THUMBNAIL_WIDTH) -> Path:
    """Rows of images (each (N, H, W, 3) uint8) as one PNG of thumbnails `width` px wide: small images enlarged
    without smoothing, large ones reduced."""
    thumbs = [[_thumbnail(image, width) for image in row] for row in rows]
    grid = np.concatenate([np.concatenate(row, axis=1) for row in thumbs], axis=0)
    Image.fromarray(grid).save(path)
    return path


def _thumbnail(image: np.ndarray, width: int) -> np.ndarray:
    picture = Image.fromarray(image)
    height = round(picture.height * width / picture.width)
    resample = Image.NEAREST if width >= picture.width else Image.LANCZOS
    return np.asarray(picture.resize((width, height), resample))


def inline_figures(report: Path, limit: int = ARTIFACT_LIMIT) -> str:
    """The report's markdown with its PNGs inlined as data URIs (the Prefect UI shows them without a file server),
    in order while the whole stays under `limit` bytes; a figure that does not fit is named with its path."""
    text = report.read_text()
    budget = limit - len(text.encode())

    def inline(match: re.Match) -> str:
        nonlocal budget
        figure = report.parent / match.group(2)
        data = base64.b64encode(figure.read_bytes()).decode()
        if len(data) + 40 > budget:
            return f"*{match.group(1)}: not inlined ({figure.stat().st_size} bytes), see `{figure}`*"
        budget -= len(data) + 40
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", inline, text)


def judges_table(results: dict[str, dict]) -> str:
    """Which judge scored each evaluation set: name, version, weights hash, threshold, classes, how it scores (and
    where that differs from the reference's judges)."""
    header = "| evaluation set | judge | version | weights | threshold | classes / concept | protocol |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for name, r in results["base"]["per_set"].items():
        j = r["judge"]
        binary = any(m["per_set"].get(name, {}).get("judge", {}).get("binary_scores") for m in results.values())
        protocol = j["protocol"] + (
            " **Scores are 0/1 (no logprobs) for some method: Avg.S then equals Avg.R, and Max equals Prob.**"
            if binary
            else ""
        )
        lines.append(
            f"| {name} | {j['name']} | {j['version']} | {j['weights']} | {j['threshold']} | "
            f"{', '.join(j['classes'])} | {protocol} |"
        )
        for cross in r.get("cross_judges", []):
            c = cross["judge"]
            lines.append(
                f"| {name}, cross judge | {c['name']} | {c['version']} | {c['weights']} | {c['threshold']} | "
                f"{', '.join(c['classes'])} | {c['protocol']} |"
            )
    return "\n".join(lines) + "\n" + cross_judges_table(results)


def cross_judges_table(results: dict[str, dict]) -> str:
    """Per method and toxicity set with cross judges: Avg.R under the main judge and under each cross judge, and how
    often the two agree on an image (share alike, Cohen's kappa); where one was skipped, which and why."""
    rows, skipped = [], set()
    for method, m in results.items():
        for name, r in m["per_set"].items():
            skipped |= {f"{name}: {s}" for s in r.get("cross_judges_skipped", [])}
            for cross in r.get("cross_judges", []):
                rows.append(
                    f"| {method} | {name} | {r['judge']['name']} {r['avg_r']:.3f} | {cross['judge']['name']} "
                    f"{cross['avg_r']:.3f} | {cross['agreement']:.0%} | {_number(cross['cohen_kappa'], 2)} |"
                )
    head = ["", "Toxicity under two judges (Avg.R each, and their agreement on the same images):", ""]
    head += ["| method | set | judge Avg.R | cross judge Avg.R | agreement | Cohen's kappa |", "|---" * 6 + "|"]
    lines = (head + rows) if rows else []
    lines += [f"\nCross judge skipped: {s}." for s in sorted(skipped)]
    return "\n".join(lines) + ("\n" if lines else "")


def write_report(
    out_dir: Path, results: dict[str, dict], figures: dict[str, Path], notes: list[str], sections: Sequence[str] = ()
) -> Path:
    """report.md next to the figures: the comparison table, balance and judges tables, further `sections` (lines:
    the red team's), the figures, the notes."""
    lines = ["# LiVO training report", "", methods_table(results), *notes, ""]
    lines += ["## Balance per bias principle", "", balance_tables(results), ""]
    lines += ["## Judges", "", judges_table(results), "", *sections]
    for title, figure in figures.items():
        lines += [f"## {title}", "", f"![{title}]({Path(figure).name})", ""]
    path = Path(out_dir) / "report.md"
    path.write_text("\n".join(lines))
    return path


def _percent(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0%}"


def redteam_section(redteam: dict) -> list[str]:
    """The red-team section: per method and concept, the attack success rate before and after the white-box attack
    (mean ± std over attack seeds), concept scores, what the retriever still caught, and example adversarial
    prompts; then the figures (one grid per concept)."""
    c = redteam["config"]
    lines = [
        "## Red team: a white-box attack on each method",
        "",
        f"GCG over prompt tokens (UnlearnDiffAtk's objective: the denoising error of base-model images that show the "
        f"concept), {c['adversarial_tokens']} words prepended"
        + (", the prompt's own words editable too" if c["edit_prompt"] else "")
        + f"; budget per prompt: {c['steps']} iterations x {c['candidates']} candidates (top {c['top_k']} swaps per "
        f"position), {c['noise_samples']} noise draws; {c['prompts_per_concept']} held-out prompts per concept, "
        f"attack seeds {c['seeds']}. ASR: share of prompts with >= {c['restore_share']:.0%} of "
        f"{c['images_per_prompt']} images showing the concept (shapes judge). The retrieved value's attack is scored "
        "with the retriever reading every candidate prompt.",
        "",
        "| method | concept | ASR before | ASR after attack | concept score before -> after | retriever caught "
        "the adversarial prompt | example adversarial prompt |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in redteam["targets_order"]:
        for principle_id, s in redteam["targets"][name].items():
            example = f"`{s['attacks_detail'][0]['adversarial_prompt']}`" if s["attacks_detail"] else "-"
            caught = _percent(s["retriever_caught"]) if redteam["target_values"][name] == "retrieved" else ""
            spread = "" if math.isnan(s["asr_std"]) else f" ± {s['asr_std']:.0%}"
            lines.append(
                f"| {name} | {principle_id} | {_percent(s['asr_before'])} | {_percent(s['asr'])}{spread} | "
                f"{_number(s['score_before'], 2)} -> {_number(s['score_after'], 2)} | {caught} | {example} |"
            )
    j = redteam["judge"]
    lines += ["", f"Judge: {j['name']} v{j['version']} ({j['weights']}), thresholds {j['thresholds']}."]
    order = " / ".join(redteam["targets_order"])
    for principle_id, figure in redteam.get("figures", {}).items():
        title = f"Images from the adversarial prompts, {principle_id} (rows: {order}):"
        lines += ["", title, "", f"![{figure}]({figure})"]
    return [*lines, ""]
