"""The flows' task runner, chosen by the environment of the process that runs the flow (a worker's job
variables, a shell): LIVO_TASK_RUNNER=threads (default), `dask` (a local Dask cluster of LIVO_DASK_WORKERS
processes) or `dask:tcp://HOST:8786` (an existing Dask cluster). Dask needs the `dask` extra (prefect-dask)."""

import os

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner


def task_runner() -> TaskRunner:
    spec = os.environ.get("LIVO_TASK_RUNNER", "threads")
    if spec == "threads":
        return ThreadPoolTaskRunner()
    if spec == "dask" or spec.startswith("dask:"):
        try:
            from prefect_dask import DaskTaskRunner
        except ImportError:
            raise RuntimeError(f"LIVO_TASK_RUNNER={spec} needs prefect-dask: pip install 'livo[dask]'") from None
        address = spec.partition(":")[2]
        if address:
            return DaskTaskRunner(address=address)
        workers = int(os.environ.get("LIVO_DASK_WORKERS", "2"))
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1})
    raise ValueError(f"LIVO_TASK_RUNNER={spec!r}: use threads, dask or dask:tcp://HOST:PORT")
