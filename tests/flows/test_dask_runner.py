"""build-dataset with LIVO_TASK_RUNNER=dask: its shard tasks run in the processes of a local Dask cluster
(prefect-dask) and the dataset has exactly the pair ids of the same stages run in one process."""

import subprocess
import sys
from pathlib import Path

from livo_core.build import run_build
from livo_core.dataset import validate_dataset
from livo_core.schema import PAIRS, read_table
from tests.flows.test_distributed_build import REPO, _config

BUILD = """
import os, sys
from flows.build_dataset import build_dataset
from livo_core.build import BuildConfig
print(type(build_dataset.task_runner).__name__)
build_dataset(BuildConfig.model_validate_json(sys.argv[1]))
"""


def _pair_ids(out_dir: Path) -> list[str]:
    return read_table(out_dir / "pairs.parquet", PAIRS).column("pair_id").to_pylist()


def test_dask_task_runner_builds_the_pairs_of_one_process(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PREFECT_HOME": str(tmp_path / "prefect"),  # an ephemeral server on SQLite in there
        "LIVO_TASK_RUNNER": "dask",
        "LIVO_DASK_WORKERS": "2",
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", BUILD, _config(tmp_path / "dask").model_dump_json()],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[0] == "DaskTaskRunner"

    run_build(_config(tmp_path / "one"))

    dask, one = _pair_ids(tmp_path / "dask"), _pair_ids(tmp_path / "one")
    assert len(one) > 100 and sorted(dask) == sorted(one) and len(set(dask)) == len(dask)
    assert validate_dataset(tmp_path / "dask").ok
