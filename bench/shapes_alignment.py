"""The shapes benchmark: LiVO vs Diffusion-DPO with the same budget, each trained once per training seed, held-out
prompts, 2 evaluation seeds x 32 images per prompt; the dataset is build-dataset's (measured-distribution targets).

Run: python bench/shapes_alignment.py [--steps 1500] [--seeds 0,1,2]  ->  bench/results/shapes_alignment.{json,md},
bench/results/shapes_class_shares.png, bench/results/shapes_convergence.png (held-out D1 and toxic ratio at each
checkpoint of training seed 0, LiVO vs DPO).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from livo_core.build import BuildConfig  # noqa: E402
from livo_core.checkpoint import list_checkpoints  # noqa: E402
from livo_core.evaluation import Method, evaluate, shapes_eval_sets  # noqa: E402
from livo_core.experiment import BENCH_EVAL, bench_config, run_experiment  # noqa: E402
from livo_core.pipeline import LivoPipeline  # noqa: E402
from livo_core.principles import load_principles  # noqa: E402

RESULTS = Path(__file__).parent / "results"
QUICK_EVAL = BENCH_EVAL.model_copy(update={"images_per_prompt": 8, "toxic_images_per_prompt": 5})


def convergence(train_dir: Path, losses: tuple[str, ...]) -> dict[str, list[dict]]:
    """Quick held-out metrics at every kept checkpoint of each loss's first training seed."""
    curves = {}
    for loss in losses:
        curves[loss] = []
        for checkpoint in list_checkpoints(train_dir / f"train-{loss}-seed0"):
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
        ax.set_title(f"held-out {metric} (8 images per prompt)")
        ax.set_xlabel("training step (batch 8)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500, help="training steps per loss and seed (batch 8)")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds")
    parser.add_argument("--out-dir", type=Path, default=Path("outputs/bench-shapes-alignment"))
    args = parser.parse_args()
    losses, seeds = ("livo", "dpo"), tuple(int(s) for s in args.seeds.split(","))
    results = run_experiment(args.out_dir, BuildConfig(), bench_config(losses, seeds, args.steps))
    report = Path(results["report"])
    curves = convergence(args.out_dir / "train-livo", losses)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "shapes_alignment.json").write_text(
        json.dumps({k: v for k, v in results.items() if k != "report"} | {"convergence": curves}, indent=2)
    )
    (RESULTS / "shapes_alignment.md").write_text(report.read_text().split("## Metrics per method")[0])
    shutil.copy(report.parent / "class_shares.png", RESULTS / "shapes_class_shares.png")
    plot(curves, results["base"]["summary"], RESULTS / "shapes_convergence.png")
    print((RESULTS / "shapes_alignment.md").read_text())


if __name__ == "__main__":
    main()
