"""Scale-out figures, side by side in one run, on this machine:

1. build-dataset/local's config through a Prefect server on PostgreSQL: one flow run that generates every shard
   itself vs the same flow fanning its shards out to two process workers (`--limit 1` each); pair ids, wall times,
   shards per worker.
2. Training on that dataset: one process with 8 pairs a step vs two processes (torchrun, gloo) with 4 each;
   losses and final weights compared.

Needs Debian's postgresql package. Run from the checkout: python -m bench.scale_out
-> bench/results/scale_out.{json,md}
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from safetensors.torch import load_file

from livo_core.build import BuildConfig
from livo_core.checkpoint import latest_checkpoint
from livo_core.config import TrainConfig
from livo_core.models.value_encoder import SUBFOLDER
from livo_core.training import METRICS_FILE
from tests.helpers.cluster import pair_ids, prefect_on_postgres, run_build, shard_runs, worker_names
from tests.helpers.ports import free_port

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
TRAIN = """
import sys
from livo_core.config import TrainConfig
from livo_core.training import Trainer
Trainer(TrainConfig.model_validate_json(sys.argv[1])).fit()
"""
TRAIN_STEPS = 40


def _timed(args: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return time.monotonic() - start


def build_side_by_side(work: Path) -> dict:
    """The default BuildConfig built twice through a PostgreSQL-backed server: in one flow run, then fanned out."""
    runs, ids = {}, {}
    with prefect_on_postgres(work / "infra") as cluster:
        for name, deployment in (("one flow run", ""), ("two workers", "generate-shard/local")):
            config = BuildConfig(out_dir=str(work / name.replace(" ", "-")))
            seconds, _ = run_build(config, cluster.env(), deployment)
            ids[name] = pair_ids(config.out_dir)
            runs[name] = {"seconds": round(seconds, 1), "pairs": len(ids[name]), "distinct": len(set(ids[name]))}
        ran_by = Counter(worker for _, worker, _ in shard_runs(cluster).values())
        per_worker = [ran_by[name] for name in sorted(worker_names(cluster))]  # from the server, not the logs
    same = sorted(ids["one flow run"]) == sorted(ids["two workers"])
    return {"runs": runs, "same_pair_ids": same, "shard_runs_per_worker": per_worker}


def _train_config(dataset: Path, out: Path, batch_size: int) -> TrainConfig:
    return TrainConfig(
        base_model="shapes",
        dataset=str(dataset),
        output_dir=str(out),
        learning_rate=1e-3,
        batch_size=batch_size,
        max_steps=TRAIN_STEPS,
        checkpoint_every=1000,
        validate_every=10_000,
        log_every=1,
        validation_principle=None,
        num_threads=1,
    )


def train_side_by_side(dataset: Path, work: Path) -> dict:
    """8 pairs a step: one process, then two torchrun processes of 4 pairs each."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")
    one, two = _train_config(dataset, work / "one", 8), _train_config(dataset, work / "two", 4)
    seconds_one = _timed([sys.executable, "-c", TRAIN, one.model_dump_json()], env)
    script = work / "train.py"
    script.write_text(TRAIN)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    seconds_two = _timed([*launch, "--master_port", str(free_port()), str(script), two.model_dump_json()], env)
    losses = {
        name: [json.loads(line)["loss"] for line in (work / name / METRICS_FILE).read_text().splitlines()]
        for name in ("one", "two")
    }
    weights = {name: load_file(latest_checkpoint(work / name) / SUBFOLDER / "model.safetensors") for name in losses}
    diffs = {n: (weights["one"][n] - weights["two"][n]).abs().max().item() for n in weights["one"]}
    worst_rel = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(losses["one"], losses["two"], strict=True))
    return {
        "steps": TRAIN_STEPS,
        "seconds": {"one process": round(seconds_one, 1), "two processes": round(seconds_two, 1)},
        "loss_first_last": {name: [round(v[0], 5), round(v[-1], 5)] for name, v in losses.items()},
        "loss_max_relative_difference": worst_rel,
        "weights_max_abs_difference": max(diffs.values()),
        "weights_max_abs_difference_except_k_proj_bias": max(
            d for n, d in diffs.items() if not n.endswith("k_proj.bias")
        ),
    }


def _markdown(result: dict) -> str:
    build, train = result["build"], result["train"]
    lines = [
        "# Scale-out, measured side by side (`python -m bench.scale_out`)",
        "",
        "2 CPU cores; a Prefect 3.9.1 server on PostgreSQL 15 (127.0.0.1), build-dataset/local's config.",
        "",
        "| build | wall time | pairs | distinct ids |",
        "|---|---|---|---|",
        *(f"| {name} | {r['seconds']} s | {r['pairs']} | {r['distinct']} |" for name, r in build["runs"].items()),
        "",
        f"Same pair ids: **{build['same_pair_ids']}**; shard flow runs per worker: {build['shard_runs_per_worker']}.",
        "",
        f"Training, {train['steps']} steps of 8 pairs on that dataset (shapes model):",
        "",
        "| run | wall time | loss, first and last step |",
        "|---|---|---|",
        f"| one process, 8 pairs | {train['seconds']['one process']} s | {train['loss_first_last']['one']} |",
        f"| torchrun, 2 processes x 4 pairs | {train['seconds']['two processes']} s | "
        f"{train['loss_first_last']['two']} |",
        "",
        f"Largest relative loss difference over the {train['steps']} steps: "
        f"{train['loss_max_relative_difference']:.2e};",
        f"final weights: largest difference {train['weights_max_abs_difference']:.2e}"
        f" ({train['weights_max_abs_difference_except_k_proj_bias']:.2e} without the attention key biases, whose"
        " true gradient is 0 and which Adam moves by float noise).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="livo-scale-out-"))
    try:
        build = build_side_by_side(work)
        train = train_side_by_side(work / "two-workers", work / "train")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"build": build, "train": train}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale_out.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "scale_out.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
