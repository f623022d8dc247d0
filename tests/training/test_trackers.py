"""`log_with`: the tracker gets metrics.jsonl's metrics, at the same steps, and a resumed run logs each step once."""

import json
import shutil

import pytest

from livo_core import training
from livo_core.checkpoint import latest_checkpoint
from livo_core.training import TRACKER_PROJECT, Trainer
from tests.training.test_trainer import config

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def jsonl(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def scalars(out) -> dict[str, list[tuple[int, float]]]:
    """tag -> (step, value) of the run's tensorboard event files, after tensorboard's purge of restarted steps."""
    events = event_accumulator.EventAccumulator(str(out / TRACKER_PROJECT), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def assert_same_metrics(out) -> None:
    log, tracked = jsonl(out), scalars(out)
    assert set(tracked) == set(log[0]) - {"step"}
    for tag, points in tracked.items():
        assert [step for step, _ in points] == [r["step"] for r in log], tag
        assert [value for _, value in points] == pytest.approx([r[tag] for r in log], rel=1e-6), tag  # float32


def test_tensorboard_gets_the_jsonl_metrics(tiny_pipeline_dir, dataset, tmp_path):
    Trainer(config(tiny_pipeline_dir, dataset, tmp_path, max_steps=3, log_with="tensorboard")).fit()
    assert [r["step"] for r in jsonl(tmp_path)] == [1, 2, 3]
    assert_same_metrics(tmp_path)


def test_resumed_tensorboard_run_logs_each_step_once(tiny_pipeline_dir, dataset, tmp_path):
    Trainer(config(tiny_pipeline_dir, dataset, tmp_path, max_steps=3, log_with="tensorboard")).fit()
    shutil.rmtree(latest_checkpoint(tmp_path))  # killed after logging step 3, before its checkpoint
    resumed = Trainer(config(tiny_pipeline_dir, dataset, tmp_path, max_steps=4, log_with="tensorboard"))
    assert resumed.step == 2
    resumed.fit()
    assert [r["step"] for r in jsonl(tmp_path)] == [1, 2, 3, 4]
    assert_same_metrics(tmp_path)


def test_no_tracker_writes_no_event_files(tiny_pipeline_dir, dataset, tmp_path):
    Trainer(config(tiny_pipeline_dir, dataset, tmp_path, max_steps=1)).fit()
    assert jsonl(tmp_path)
    assert not list(tmp_path.rglob("events.out.tfevents*"))


def test_a_missing_tracker_fails_before_training(tiny_pipeline_dir, dataset, tmp_path, monkeypatch):
    monkeypatch.setitem(training._TRACKERS, "wandb", (lambda: False, "wandb"))
    with pytest.raises(ImportError, match="pip install wandb"):
        Trainer(config(tiny_pipeline_dir, dataset, tmp_path, log_with="wandb"))
    assert not (tmp_path / "metrics.jsonl").exists()
