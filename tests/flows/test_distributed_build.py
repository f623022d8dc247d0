"""Scale-out for real: a Prefect server on PostgreSQL, two process workers (one flow run at a time each, as one
per GPU) generating and judging the shards of one build-dataset run. The dataset has exactly the pair ids of a
run that generates every shard itself."""

from pathlib import Path

import pytest

from livo_core import infra
from livo_core.build import BuildConfig, GenerateConfig
from livo_core.dataset import validate_dataset
from livo_core.prompts import PromptConfig
from tests.helpers.cluster import REPO, pair_ids, prefect_on_postgres, run_build, shard_runs, worker_names
from tests.helpers.postgres import query


def small_config(out_dir: Path) -> BuildConfig:
    """The shipped shapes model, 4 sampler steps: 4 first-phase and 3 bias shards, ~200 pairs."""
    generate = GenerateConfig(base_model="shapes", seeds_per_prompt=1, steps=4, batch_size=32, shard_size=96)
    return BuildConfig(
        out_dir=str(out_dir), prompts=PromptConfig(sources=("shapes",), dedup="exact"), generate=generate
    )


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """PostgreSQL, a Prefect server on it, pool `local` with generate-shard/local and two workers (limit 1)."""
    monkeypatch.setenv("LIVO_ROOT", str(REPO))
    monkeypatch.setenv("PREFECT_WORKER_QUERY_SECONDS", "1")
    with prefect_on_postgres(tmp_path / "infra") as cluster:
        yield cluster


def test_two_workers_on_postgres_build_the_pairs_of_one_process(cluster, tmp_path):
    assert cluster.server["database"].startswith("postgresql+asyncpg://127.0.0.1:")  # no credentials kept

    run_build(small_config(tmp_path / "one"), cluster.env())
    run_build(small_config(tmp_path / "fanned"), cluster.env(), shard_deployment="generate-shard/local")

    one, fanned = pair_ids(tmp_path / "one"), pair_ids(tmp_path / "fanned")
    assert len(one) > 100
    assert sorted(fanned) == sorted(one) and len(set(fanned)) == len(fanned)
    assert validate_dataset(tmp_path / "fanned").ok
    # counted by the server, not from log lines: 4 first-phase + 3 bias shard runs, each completed, run once, by
    # one of the two workers, and both workers took some
    runs = shard_runs(cluster)
    assert len(runs) == 7 and all((state, times) == ("COMPLETED", 1) for state, _, times in runs.values()), runs
    workers = worker_names(cluster)
    assert len(workers) == 2 and {worker for _, worker, _ in runs.values()} == workers, (runs, workers)
    # the runs are in PostgreSQL: 2 build-dataset runs + 7 shard runs; no SQLite database was made
    assert int(query(cluster.database_url, "select count(*) from flow_run")) == 9
    assert not (infra.prefect_home(cluster.root) / "prefect.db").exists()
