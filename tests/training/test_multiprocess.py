"""Two CPU processes (torch.distributed with gloo, launched by torchrun or `accelerate launch`) train like one process
with the same global batch: each takes half of every step's pairs, gradients are averaged, the losses match."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from livo_core.checkpoint import latest_checkpoint
from livo_core.config import TrainConfig
from livo_core.training import Trainer
from tests.helpers.float_noise import livo_loss_atol, record_errors
from tests.helpers.ports import free_port

_RUN = """
import sys
from livo_core.config import TrainConfig
from livo_core.training import Trainer
Trainer(TrainConfig.model_validate_json(sys.argv[1])).fit()
"""


def _config(tiny_pipeline_dir, dataset, out, batch_size: int) -> TrainConfig:
    return TrainConfig(
        base_model=str(tiny_pipeline_dir),
        dataset=str(dataset),
        output_dir=str(out),
        learning_rate=1e-3,
        batch_size=batch_size,
        max_steps=3,
        checkpoint_every=100,
        validate_every=1000,
        log_every=1,
        validation_principle=None,
        num_threads=1,
    )


def _losses(out) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def _launcher(name: str) -> list[str]:
    """Two processes on this machine's CPU (gloo), by torchrun or by `accelerate launch` (which calls torchrun)."""
    address = ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    if name == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *address]
    return [
        *[sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"],
        *["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"],
        *["--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port())],
    ]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_match_one_with_the_same_global_batch(tiny_pipeline_dir, dataset, tmp_path, launcher):
    one = Trainer(_config(tiny_pipeline_dir, dataset, tmp_path / "one", batch_size=4))
    errors = record_errors(one)
    one.fit()
    two = _config(tiny_pipeline_dir, dataset, tmp_path / "two", batch_size=2)  # 2 processes x 2 pairs
    launch = _launcher(launcher)
    script = tmp_path / "train.py"
    script.write_text(_RUN)
    run = subprocess.run([*launch, str(script), two.model_dump_json()], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]

    assert len(_losses(tmp_path / "two")) == 3  # one log, from the main process
    for loss_two, loss_one in zip(_losses(tmp_path / "two"), _losses(tmp_path / "one"), strict=True):
        # float32 rounding scaled by beta and alpha, the 2 processes' losses averaged (1 round) of 2 pairs each
        atol = livo_loss_atol(one.config.beta, one.config.alpha, max(errors), loss_one, terms=2)
        assert loss_two == pytest.approx(loss_one, rel=0, abs=atol)
    one_w = load_file(latest_checkpoint(tmp_path / "one") / "value_encoder" / "model.safetensors")
    two_w = load_file(latest_checkpoint(tmp_path / "two") / "value_encoder" / "model.safetensors")
    # Attention is invariant to the key bias, so its true gradient is 0 and Adam turns float noise (summed in another
    # order across processes) into steps of size lr: those weights are compared with lr's tolerance.
    for name, weight in one_w.items():
        atol = 3 * 1e-3 if name.endswith("k_proj.bias") else 1e-5
        assert torch.allclose(weight, two_w[name], atol=atol), name
