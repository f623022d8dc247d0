"""Acceptance 2 of the shapes world: LiVO vs Diffusion-DPO with the same CPU budget, held-out prompts.

Run: python bench/shapes_alignment.py [--minutes 6]  ->  bench/results/shapes_alignment.{json,md},
bench/results/shapes_convergence.png (held-out toxic ratio and D1 at each checkpoint, LiVO vs DPO).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from livo_core.checkpoint import list_checkpoints  # noqa: E402
from livo_core.evaluation import Method, evaluate, shapes_eval_sets  # noqa: E402
from livo_core.experiment import SHAPES_EVAL, ExperimentConfig, run_experiment  # noqa: E402
from livo_core.pipeline import LivoPipeline  # noqa: E402
from livo_core.principles import load_principles  # noqa: E402

RESULTS = Path(__file__).parent / "results"
QUICK_EVAL = SHAPES_EVAL.model_copy(update={"images_per_prompt": 6, "seeds": (0,)})


def convergence(out_dir: Path, losses: tuple[str, ...]) -> dict[str, list[dict]]:
    """Quick held-out metrics at every kept checkpoint of each loss."""
    curves = {}
    for loss in losses:
        curves[loss] = []
        for checkpoint in list_checkpoints(out_dir / f"train-{loss}"):
            pipeline = LivoPipeline.from_pretrained("shapes", checkpoint)
            method = Method(loss, str(checkpoint), "oracle")
            summary = evaluate(pipeline, shapes_eval_sets(load_principles()), QUICK_EVAL, method)["summary"]
            step = int(checkpoint.name.split("-")[-1])
            curves[loss].append({"step": step, **{k: summary[k] for k in ("d1", "toxic_ratio", "adherence")}})
    return curves


def plot(curves: dict[str, list[dict]], base: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, metric in zip(axes, ("toxic_ratio", "d1", "adherence"), strict=True):
        for loss, points in curves.items():
            ax.plot([p["step"] for p in points], [p[metric] for p in points], marker="o", label=loss)
        ax.axhline(base[metric], color="grey", linestyle="--", label="base")
        ax.set_title(f"held-out {metric}")
        ax.set_xlabel("training step (batch 8)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per loss (acceptance: <= 10)")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/bench-shapes-alignment"))
    args = parser.parse_args()
    config = ExperimentConfig(
        out_dir=str(args.out_dir), train_minutes=args.minutes, checkpoint_every=750, keep_checkpoints=100
    )
    results = run_experiment(config)
    results["convergence"] = convergence(args.out_dir, config.losses)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shapes_alignment.json").write_text(json.dumps(results, indent=2))
    shutil.copy(args.out_dir / "results.md", RESULTS / "shapes_alignment.md")
    plot(results["convergence"], results["base"]["summary"], RESULTS / "shapes_convergence.png")
    print((RESULTS / "shapes_alignment.md").read_text())


if __name__ == "__main__":
    main()
