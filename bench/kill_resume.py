"""Fault check of train-livo through the real deployment: kill -9 the worker in the middle of training, start a
worker, run the deployment again; the step count must go on from the last checkpoint and the final weights must
equal an uninterrupted run's.

Needs `livo up` and the dataset of build-dataset/local. Run: python bench/kill_resume.py
-> bench/results/kill_resume.{json,md}
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from livo_core import infra
from livo_core.checkpoint import latest_checkpoint, read_state
from livo_core.config import SHAPES_RECIPE, EvalConfig
from livo_core.models.value_encoder import SUBFOLDER
from livo_core.train_livo import TrainLivoConfig
from livo_core.training import METRICS_FILE, Trainer

RESULTS = Path(__file__).parent / "results"
OUT = Path("outputs/kill-resume")
CONFIG = TrainLivoConfig(
    out_dir=str(OUT / "run"),
    losses=("livo",),
    training_seeds=(0,),
    training=SHAPES_RECIPE.model_copy(update={"max_steps": 500, "checkpoint_every": 100, "validate_every": 1000}),
    evaluation=EvalConfig(images_per_prompt=5, seeds=(0,), steps=12, guidance_scale=7.5, batch_size=64),
)
KILL_AT_STEP = 250  # between the checkpoints at 200 and 300


def _weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return load_file(checkpoint / SUBFOLDER / "model.safetensors")


def _logged_steps(train_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (train_dir / METRICS_FILE).read_text().splitlines()]


def main() -> None:
    root, train_dir = Path.cwd(), OUT / "run" / "train-livo-seed0"
    shutil.rmtree(OUT, ignore_errors=True)
    params = {"config": CONFIG.model_dump(mode="json")}
    started = time.time()
    first_run = infra.run_deployment(root, "train-livo/local", params)
    while not (train_dir / METRICS_FILE).is_file() or max(_logged_steps(train_dir), default=0) < KILL_AT_STEP:
        time.sleep(0.2)
    infra.stop_worker(root, kill=True)
    killed_at = max(_logged_steps(train_dir))
    time.sleep(5)
    still_training = max(_logged_steps(train_dir)) != killed_at  # a flow-run process that outlived its worker
    checkpoint_at_kill = read_state(latest_checkpoint(train_dir))["step"]
    infra.start_worker(root)
    second_run = infra.run_deployment(root, "train-livo/local", params)
    state = infra.wait_for_flow_run(root, second_run)
    resumed_minutes = (time.time() - started) / 60

    reference = Trainer(CONFIG.train_config("livo", 0).model_copy(update={"output_dir": str(OUT / "uninterrupted")}))
    final_reference = reference.fit()
    final = latest_checkpoint(train_dir)
    a, b = _weights(final), _weights(final_reference)
    steps = _logged_steps(train_dir)
    results = {
        "first_flow_run": first_run,
        "second_flow_run": second_run,
        "second_run_state": state["name"],
        "worker_killed_at_logged_step": killed_at,
        "training_stopped_with_the_worker": not still_training,
        "newest_checkpoint_at_kill": checkpoint_at_kill,
        "final_step": read_state(final)["step"],
        "logged_steps_contiguous": steps == list(range(10, CONFIG.training.max_steps + 1, 10)),
        "max_abs_weight_difference_vs_uninterrupted": max(float((a[k] - b[k]).abs().max()) for k in a),
        "minutes_both_runs": round(resumed_minutes, 2),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "kill_resume.json").write_text(json.dumps(results, indent=2))
    table = ["| measure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in results.items()]
    (RESULTS / "kill_resume.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
