"""A scaled-out livo on this machine: PostgreSQL, a Prefect server on it, process workers; and build-dataset runs
in processes of their own. Used by the scale-out tests and by bench/scale_out.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from livo_core import infra
from livo_core.build import BuildConfig
from livo_core.schema import PAIRS, read_table
from tests.helpers.ports import free_port
from tests.helpers.postgres import postgres_server, query_rows

REPO = Path(__file__).resolve().parents[2]
BUILD = """
import sys
from flows.build_dataset import build_dataset
from livo_core.build import BuildConfig
print(type(build_dataset.task_runner).__name__)
build_dataset(BuildConfig.model_validate_json(sys.argv[1]), shard_deployment=sys.argv[2] or None)
"""


@dataclass
class Cluster:
    root: Path  # where the server's and workers' state and logs live
    server: dict
    workers: list[dict]
    database_url: str

    def env(self) -> dict[str, str]:
        """The environment of a process that talks to this server."""
        return infra._env(self.root, self.server["url"])


@contextmanager
def prefect_on_postgres(root: Path, workers: int = 2, deployments: tuple[str, ...] = ("generate-shard/local",)):
    """PostgreSQL, a Prefect server on it, pool `local` with `deployments` and `workers` process workers of one
    flow run at a time each; everything stopped on exit. Sets LIVO_ROOT (the checkout the flow runs import) and a
    1 s worker poll in this process's environment, which the workers inherit (a test sets them with monkeypatch
    first, so that they are restored)."""
    os.environ.update(LIVO_ROOT=str(REPO), PREFECT_WORKER_QUERY_SECONDS="1")
    with postgres_server() as database_url:
        try:
            server = infra.start_server(root, port=free_port(), database_url=database_url, timeout_s=180)
            infra.ensure_pool(root, "local")
            infra.deploy(root, list(deployments))
            started = [infra.start_worker(root, "local", slot=slot, limit=1) for slot in range(workers)]
            yield Cluster(root, server, started, database_url)
        finally:
            infra.stop_workers(root, "local")
            infra.stop_server(root)


def run_build(config: BuildConfig, env: dict[str, str], shard_deployment: str = "") -> tuple[float, str]:
    """The build-dataset flow in a process of its own; returns its wall time and the task runner it used."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", BUILD, config.model_dump_json(), shard_deployment],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode:
        raise AssertionError(f"build-dataset failed:\n{result.stderr[-3000:]}")
    return time.monotonic() - start, result.stdout.splitlines()[0]


def pair_ids(out_dir: str | Path) -> list[str]:
    return read_table(Path(out_dir) / "pairs.parquet", PAIRS).column("pair_id").to_pylist()


def shard_runs(cluster: Cluster) -> dict[str, tuple[str, str, int]]:
    """The flow runs of deployments (the shards), as the server's database holds them: flow-run id -> (state type,
    the worker that ran it, how many times it entered Running). The worker is the `prefect.worker.name` label a
    worker gives a run once the server has accepted its submission (Pending): two workers may both log that they
    submit one run, and the server aborts the second."""
    rows = query_rows(
        cluster.database_url,
        "select r.id, r.state_type, r.labels->>'prefect.worker.name', count(s.id) from flow_run r "
        "left join flow_run_state s on s.flow_run_id = r.id and s.type = 'RUNNING' "
        "where r.deployment_id is not null group by r.id",
    )
    return {run: (state, worker, int(running)) for run, state, worker, running in rows}


def worker_names(cluster: Cluster) -> set[str]:
    """The workers that have sent the server a heartbeat."""
    return {name for (name,) in query_rows(cluster.database_url, "select name from worker")}
