"""build-dataset with LIVO_TASK_RUNNER=dask: its shard tasks run in the processes of a local Dask cluster
(prefect-dask) and the dataset has exactly the pair ids of the same stages run in one process."""

import livo_core.build
from livo_core.dataset import validate_dataset
from tests.flows.test_distributed_build import small_config
from tests.helpers.cluster import pair_ids, run_build


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

    _, runner = run_build(small_config(tmp_path / "dask"), env)
    livo_core.build.run_build(small_config(tmp_path / "one"))

    assert runner == "DaskTaskRunner"
    dask, one = pair_ids(tmp_path / "dask"), pair_ids(tmp_path / "one")
    assert len(one) > 100 and sorted(dask) == sorted(one) and len(set(dask)) == len(dask)
    assert validate_dataset(tmp_path / "dask").ok
