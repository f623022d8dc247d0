"""Scale-out for real: a Prefect server on PostgreSQL, two process workers (one flow run at a time each, as one
per GPU) generating and judging the shards of one build-dataset run. The dataset has exactly the pair ids of a
run that generates every shard itself."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livo_core import infra
from livo_core.build import BuildConfig, GenerateConfig
from livo_core.dataset import validate_dataset
from livo_core.prompts import PromptConfig
from livo_core.schema import PAIRS, read_table
from tests.helpers.postgres import _free_port, postgres_server, query

REPO = Path(__file__).resolve().parents[2]
BUILD = """
import sys
from flows.build_dataset import build_dataset
from livo_core.build import BuildConfig
build_dataset(BuildConfig.model_validate_json(sys.argv[1]), shard_deployment=sys.argv[2] or None)
"""


def _config(out_dir: Path) -> BuildConfig:
    """The shipped shapes model, 4 sampler steps: 4 first-phase and 3 bias shards, ~200 pairs."""
    generate = GenerateConfig(base_model="shapes", seeds_per_prompt=1, steps=4, batch_size=32, shard_size=96)
    return BuildConfig(
        out_dir=str(out_dir), prompts=PromptConfig(sources=("shapes",), dedup="exact"), generate=generate
    )


def _build(root: Path, api_url: str, config: BuildConfig, shard_deployment: str = "") -> None:
    """The build-dataset flow in a process of its own, against the server at `api_url`; prints its wall time."""
    env, start = infra._env(root, api_url), time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", BUILD, config.model_dump_json(), shard_deployment],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"build-dataset shard_deployment={shard_deployment or None}: {time.monotonic() - start:.1f} s")


def _pair_ids(out_dir: Path) -> list[str]:
    return read_table(out_dir / "pairs.parquet", PAIRS).column("pair_id").to_pylist()


def _submitted_flow_runs(log: Path) -> set[str]:
    return set(re.findall(r"[Ss]ubmitting flow run '([0-9a-f-]{36})'", log.read_text(errors="replace")))


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """PostgreSQL, a Prefect server on it, pool `local` with generate-shard/local and two workers (limit 1)."""
    monkeypatch.setenv("LIVO_ROOT", str(REPO))  # the checkout the workers' flow runs import
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "1")  # poll often: the test waits on them
    root = tmp_path / "infra"
    with postgres_server() as database_url:
        try:
            server = infra.start_server(root, port=_free_port(), database_url=database_url, timeout_s=180)
            infra.ensure_pool(root, "local")
            infra.deploy(root, ["generate-shard/local"])
            workers = [infra.start_worker(root, "local", slot=slot, limit=1) for slot in (0, 1)]
            yield root, server, workers, database_url
        finally:
            infra.stop_workers(root, "local")
            infra.stop_server(root)


def test_two_workers_on_postgres_build_the_pairs_of_one_process(cluster, tmp_path):
    root, server, workers, database_url = cluster
    assert server["database"].startswith("postgresql+asyncpg://127.0.0.1:")  # no credentials in the state file

    _build(root, server["url"], _config(tmp_path / "one"))
    _build(root, server["url"], _config(tmp_path / "fanned"), shard_deployment="generate-shard/local")

    one, fanned = _pair_ids(tmp_path / "one"), _pair_ids(tmp_path / "fanned")
    assert len(one) > 100
    assert sorted(fanned) == sorted(one) and len(set(fanned)) == len(fanned)
    assert validate_dataset(tmp_path / "fanned").ok
    # each worker ran shard flow runs: 4 first-phase + 3 bias shards between them, none twice
    by_worker = [_submitted_flow_runs(Path(w["log"])) for w in workers]
    assert all(by_worker) and not by_worker[0] & by_worker[1]
    assert len(by_worker[0] | by_worker[1]) == 7
    # the runs are in PostgreSQL: 2 build-dataset runs + 7 shard runs; no SQLite database was made
    assert int(query(database_url, "select count(*) from flow_run")) == 9
    assert not (infra.prefect_home(root) / "prefect.db").exists()
