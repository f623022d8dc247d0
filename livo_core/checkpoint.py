"""Training checkpoints as one explicit state: weights, optimizer, scheduler, RNG, step and resolved config.

Everything tensor-valued is safetensors and everything else JSON, so resuming never unpickles a file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from livo_core.atomic import fsync_tree, temporary_path
from livo_core.models.value_encoder import ValueEncoder

PREFIX = "checkpoint-"
STATE_FILE = "state.json"


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {"param_groups": state_dict["param_groups"], "state": {}}
    for index, slots in state_dict["state"].items():
        plain["state"][str(index)] = {}
        for name, value in slots.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(index)][name] = value
    return tensors, plain


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state = {int(index): dict(slots) for index, slots in plain["state"].items()}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state[int(index)][name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def checkpoint_path(output_dir: Path, step: int) -> Path:
    """The folder of step `step`'s checkpoint (zero-padded, so that names sort by step)."""
    return Path(output_dir) / f"{PREFIX}{step:07d}"


def save_checkpoint(
    output_dir: Path,
    step: int,
    value_encoder: ValueEncoder,
    optimizer,
    scheduler,
    config: dict,
    keep: int = 2,
    value_shares: dict[str, float] | None = None,
    grad_scaler=None,
) -> Path:
    """Write `checkpoint-{step}` atomically (a temporary folder unique to this save, fsync, rename); keeps the
    newest `keep`. `value_shares` (bias principle -> share of images given the value) go into the encoder's
    livo.json, so that inference uses the share its dataset was calibrated for. With fp16, the GradScaler's state
    is saved too, so that a resumed run scales its losses as an uninterrupted one."""
    final = checkpoint_path(output_dir, step)
    tmp = temporary_path(final)
    value_encoder.save_pretrained(tmp, metadata={"step": step, "value_shares": value_shares or {}})
    opt_tensors, opt_plain = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
    state = {
        "step": step,
        "config": config,
        "optimizer": opt_plain,
        "scheduler": scheduler.state_dict(),
        "grad_scaler": grad_scaler.state_dict() if grad_scaler is not None else None,  # fp16: its loss scale
        "python_rng": _jsonable(random.getstate()),
        "numpy_rng": _jsonable(np.random.get_state(legacy=False)),
    }
    (tmp / STATE_FILE).write_text(json.dumps(state, default=str))
    fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    # Older checkpoints past `keep`, and the temporary folders of saves killed midway (one process writes a run's
    # checkpoints, so no other save is in progress).
    for old in list_checkpoints(output_dir)[:-keep] + list(Path(output_dir).glob(f".{PREFIX}*.tmp")):
        shutil.rmtree(old, ignore_errors=True)
    return final


def _jsonable(value):
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints (those with a state file), oldest first."""
    return sorted(p for p in Path(output_dir).glob(f"{PREFIX}*") if (p / STATE_FILE).is_file())


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def read_state(checkpoint: Path) -> dict:
    return json.loads((Path(checkpoint) / STATE_FILE).read_text())


def restore_training_state(checkpoint: Path, optimizer, scheduler, grad_scaler=None) -> int:
    """Load optimizer, scheduler, GradScaler (fp16) and RNG states in place; returns the step to continue from."""
    state = read_state(checkpoint)
    if grad_scaler is not None and state.get("grad_scaler"):
        grad_scaler.load_state_dict(state["grad_scaler"])
    optimizer.load_state_dict(
        _unflatten_optimizer(load_file(str(Path(checkpoint) / "optimizer.safetensors")), state["optimizer"])
    )
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(load_file(str(Path(checkpoint) / "rng.safetensors"))["torch_rng"])
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy_rng"])
    return int(state["step"])
