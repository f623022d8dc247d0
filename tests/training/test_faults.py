"""Training faults: kill -9 during a checkpoint save, and CUDA out of memory (the real exception type, simulated)."""

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from livo_core.checkpoint import STATE_FILE, latest_checkpoint, list_checkpoints, read_state
from livo_core.training import Trainer
from tests.training.test_trainer import config, same, weights

ROOT = Path(__file__).resolve().parents[2]
ENV = os.environ | {"OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}


_KILLED_IN_SAVE = """
import os, signal, sys
from pathlib import Path
from livo_core.config import TrainConfig
from livo_core.training import Trainer

real_replace = os.replace

def replace(src, dst):  # checkpoint-0000004 is complete in its temporary folder, not renamed yet
    if Path(dst).name == "checkpoint-0000004":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

os.replace = replace
Trainer(TrainConfig.model_validate_json(sys.argv[1])).fit()
"""


def test_kill_9_during_a_checkpoint_save_then_rerun_equals_uninterrupted_run(tiny_pipeline_dir, dataset, tmp_path):
    full = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "full", max_steps=6))
    full.fit()
    cut = config(tiny_pipeline_dir, dataset, tmp_path / "cut", max_steps=6)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_IN_SAVE, cut.model_dump_json()], cwd=ROOT, env=ENV, capture_output=True
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    (leftover,) = (tmp_path / "cut").glob(".checkpoint-0000004.*.tmp")
    assert (leftover / STATE_FILE).is_file()  # a whole checkpoint under its temporary name: never loaded
    assert read_state(latest_checkpoint(tmp_path / "cut"))["step"] == 2

    rerun = Trainer(cut)
    assert rerun.step == 2
    rerun.fit()
    assert same(weights(rerun.value_encoder), weights(full.value_encoder), atol=1e-6)
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert [p.name for p in list_checkpoints(tmp_path / "cut")] == ["checkpoint-0000004", "checkpoint-0000006"]
    assert not leftover.exists()  # the next save removes what a killed save left


def _out_of_memory_above(trainer: Trainer, pairs: int, from_position: int = 0):
    """`trainer.losses` raising CUDA's out-of-memory error for micro-batches of more than `pairs` pairs that start at
    `from_position` or later in the step."""
    real = trainer.losses

    def losses(batch):
        if len(batch.prompts) > pairs and batch.positions[0] >= from_position:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch)

    return losses


def test_cuda_out_of_memory_halves_the_micro_batch_and_training_goes_on(
    tiny_pipeline_dir, dataset, tmp_path, monkeypatch, caplog
):
    # Micro-batches of 4 pairs, 2 per step: the first fits, the second runs out of memory after the first's backward.
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "oom", batch_size=4, grad_accumulation=2))
    monkeypatch.setattr(trainer, "losses", _out_of_memory_above(trainer, 2, from_position=4))
    with caplog.at_level(logging.WARNING, logger="livo_core.training"):
        trainer.fit()
    # The step is redone in micro-batches of 2 (the first one's gradient dropped): exactly the run configured so.
    small = Trainer(config(tiny_pipeline_dir, dataset, tmp_path / "small", batch_size=2, grad_accumulation=4))
    small.fit()
    assert same(weights(trainer.value_encoder), weights(small.value_encoder), atol=1e-6)

    logs = [
        [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("oom", "small")
    ]
    assert [r["step"] for r in logs[0]] == [1, 2, 3, 4]
    assert [r["micro_batch"] for r in logs[0]] == [2, 2, 2, 2]
    for a, b in zip(*logs, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "CUDA out of memory at step 1: micro-batch halved from 4 to 2 pairs",
        "trained with micro-batches of 2 pairs, not batch_size=4, after CUDA out of memory (the same gradients in "
        "more passes); a batch_size of 2 or less avoids the retries",
    ]


def test_cuda_out_of_memory_with_a_single_pair_is_a_clear_error(tiny_pipeline_dir, dataset, tmp_path, monkeypatch):
    trainer = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, batch_size=2, max_steps=1))
    monkeypatch.setattr(trainer, "losses", _out_of_memory_above(trainer, 0))
    with pytest.raises(torch.cuda.OutOfMemoryError, match="at step 1 with a single pair per micro-batch"):
        trainer.fit()
    assert trainer.micro_batch == 1 and list_checkpoints(tmp_path) == []
