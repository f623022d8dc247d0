"""build-dataset on a tiny config: it completes, writes a valid dataset, and a re-run is served from the cache."""

import shutil
import time
from pathlib import Path

import fsspec
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows.build_dataset import build_dataset
from livo_core.build import BuildConfig, GenerateConfig
from livo_core.dataset import validate_dataset
from livo_core.prompts import PromptConfig
from livo_core.schema import PAIRS, read_table
from tasks.build import RESULTS_DIR


@pytest.fixture
def config(tiny_pipeline_dir, tmp_path):
    generate = GenerateConfig(
        base_model=str(tiny_pipeline_dir), seeds_per_prompt=1, steps=2, batch_size=32, shard_size=64
    )
    return BuildConfig(
        out_dir=str(tmp_path / "dataset"), prompts=PromptConfig(sources=("shapes",), dedup="exact"), generate=generate
    )


def _files(root: Path) -> dict[str, int]:
    """Every file the stages wrote (not Prefect's results), with its modification time."""
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and RESULTS_DIR not in p.parts
    }


def _task_states(flow_run_id, expected: int, timeout_s: float = 30.0) -> list[str]:
    """State names of the flow run's task runs, once the server has recorded `expected` final ones (it records
    them from events, a moment after the run)."""
    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            if len(runs) >= expected and all(r.state and r.state.is_final() for r in runs):
                return [r.state_name for r in runs]
            if time.monotonic() > deadline:
                return [r.state_name for r in runs]
            time.sleep(0.5)


def test_build_dataset_flow_then_rerun_from_cache(prefect_harness, config):
    root = Path(config.out_dir)
    pairs = Path(build_dataset(config))

    assert pairs == root / "pairs.parquet"
    read_table(pairs, PAIRS)
    assert validate_dataset(root).ok
    card = (root / "README.md").read_text()
    assert card.startswith("---\n") and "\n# livo preference dataset\n" in card  # front matter, then the card
    assert (root / "data").is_dir()  # the Hugging Face split files (loaded in tests/unit/test_hf_dataset.py)
    first = _files(root)
    assert any(name.startswith("images/") for name in first)
    assert any(name.startswith("shards/judgments-") for name in first)

    state = build_dataset(config, return_state=True)

    assert state.is_completed() and Path(state.result()) == pairs
    # no new image, no new shard table, nothing rewritten: not even the prompts and pairs tables, which the
    # stage functions rewrite when called, so every task was a cache hit
    assert _files(root) == first
    # one generate and one judge task per shard, 5 other stages: all served from the cache
    shards = sum(name.startswith("shards/images-") for name in first)
    assert _task_states(state.state_details.flow_run_id, 2 * shards + 5) == ["Cached"] * (2 * shards + 5)


def test_build_dataset_into_a_url_and_again_on_a_machine_without_the_mirror(
    prefect_harness, config, tmp_path, monkeypatch
):
    monkeypatch.setenv("LIVO_MIRROR_DIR", str(tmp_path / "mirrors"))
    url = f"memory://livo-test/{tmp_path.name}/dataset"  # fsspec's in-memory filesystem: not on this disk
    remote = config.model_copy(update={"out_dir": url})
    fs = fsspec.filesystem("memory")

    assert build_dataset(remote) == f"{url}/pairs.parquet"

    stored = sorted(fs.find(f"/livo-test/{tmp_path.name}/dataset"))
    names = {path.rsplit("/dataset/", 1)[1].split("/")[0] for path in stored}
    assert {"pairs.parquet", "README.md", "images", "latents", "shards", "prompts.parquet"} <= names
    assert not any("/." in path for path in stored)  # no task cache, no temporary files
    pairs = fs.cat_file(f"/livo-test/{tmp_path.name}/dataset/pairs.parquet")

    # a fresh machine: nothing local, no pipeline to generate with; everything comes from the URL
    shutil.rmtree(tmp_path / "mirrors")
    monkeypatch.setattr("livo_core.build._pipeline", _no_generation)

    assert build_dataset(remote) == f"{url}/pairs.parquet"
    assert sorted(fs.find(f"/livo-test/{tmp_path.name}/dataset")) == stored
    assert fs.cat_file(f"/livo-test/{tmp_path.name}/dataset/pairs.parquet") == pairs


def _no_generation(gen):
    raise AssertionError(f"{gen.base_model} asked to generate: the shards at the URL were not reused")
