"""Local Prefect infrastructure behind `livo server|worker|up|run-deployment`: background processes and their state.

Glue, not logic: it shells out to the `prefect` CLI of this Python and talks to the server's REST API with urllib,
so nothing here imports Prefect. Everything lives under `<root>/.livo/`: `prefect/` is the PREFECT_HOME (SQLite
database, logs), `server.json` and `worker.json` hold the pid, URL and log of each background process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

STATE_DIR = ".livo"
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def prefect_home(root: Path) -> Path:
    return Path(root).resolve() / STATE_DIR / "prefect"


def _state_path(root: Path, name: str) -> Path:
    return Path(root).resolve() / STATE_DIR / f"{name}.json"


def read_state(root: Path, name: str) -> dict | None:
    """The state of background process `name` (server, worker) if it is still running, else None."""
    path = _state_path(root, name)
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if not is_running(state["pid"]):
        path.unlink()
        return None
    return state


def _env(root: Path, api_url: str | None = None) -> dict[str, str]:
    """PREFECT_HOME under root, LIVO_ROOT (where flow runs find the code; prefect.yaml's pull step) unless set."""
    env = dict(os.environ, PREFECT_HOME=str(prefect_home(root)), COLUMNS="200")
    env.setdefault("LIVO_ROOT", str(Path(root).resolve()))
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _prefect(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefect", *args]


def _reap(pid: int) -> None:
    """Collect the exit status of `pid` if it is our exited child, so no zombie is left behind."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child: its own parent reaps it
        pass


def is_running(pid: int) -> bool:
    """Whether `pid` is a Prefect process that has not finished exiting (a zombie, or a pid reused by another
    program, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[1].split()[0] in ("Z", "X"):
        _reap(pid)
        return False
    return not cmdline or b"prefect" in cmdline  # an empty cmdline: still exiting, not yet a zombie


def _database_kind(database_url: str | None) -> str:
    """What the state file says of the server's database: its scheme and host, never its credentials."""
    if not database_url:
        return "sqlite (PREFECT_HOME/prefect.db)"
    scheme, _, rest = database_url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def _spawn(root: Path, name: str, args: list[str], env: dict[str, str], url: str, **extra: str) -> dict:
    """Start `args` in its own session (it outlives this process), log to PREFECT_HOME/<name>.log, save its state."""
    log = prefect_home(root) / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            args,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    state = {"pid": process.pid, "url": url, "log": str(log), "root": str(Path(root).resolve()), **extra}
    _state_path(root, name).write_text(json.dumps(state, indent=2))
    return state


def _log_tail(state: dict, lines: int = 20) -> str:
    return "\n".join(Path(state["log"]).read_text(errors="replace").splitlines()[-lines:])


def _get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def _post(url: str, body: dict, timeout: float = 10.0):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


def is_healthy(api_url: str) -> bool:
    try:
        return _get(f"{api_url}/health", timeout=2.0) is True
    except (OSError, ValueError):
        return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def start_server(
    root: Path,
    port: int = 4200,
    host: str = "127.0.0.1",
    timeout_s: float = 120.0,
    database_url: str | None = None,
) -> dict:
    """`prefect server start` in the background; returns once /api/health answers. Its database is SQLite in
    PREFECT_HOME, or `database_url` (`postgresql+asyncpg://user:password@host:port/db`), which is passed in the
    server's environment only: never written to the state file or logged."""
    state = read_state(root, "server")
    if state and is_healthy(state["url"]):
        return state
    if state:  # a server of ours that stopped answering
        stop_server(root)
    if not _port_free(host, port):
        raise InfraError(f"{host}:{port} is in use: pick another port with --port")
    url = f"http://{host}:{port}/api"
    env = _env(root) | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # a local server: no telemetry
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    args = _prefect("server", "start", "--host", host, "--port", str(port))
    state = _spawn(root, "server", args, env, url, database=_database_kind(database_url))
    deadline = time.monotonic() + timeout_s
    while not is_healthy(url):
        if not is_running(state["pid"]):
            _state_path(root, "server").unlink(missing_ok=True)
            raise RuntimeError(f"the Prefect server exited; end of {state['log']}:\n{_log_tail(state)}")
        if time.monotonic() > deadline:
            stop_server(root)
            raise TimeoutError(f"no answer from {url}/health after {timeout_s:.0f} s; see {state['log']}")
        time.sleep(0.5)
    return state


def stop_process(pid: int, sigterms: int = 1, grace_s: float = 15.0) -> None:
    """SIGTERM the process group of `pid` (`sigterms` times, `grace_s` apart), then SIGKILL what is left."""

    def signal_group(sig: int) -> None:
        try:
            os.killpg(pid, sig)  # the group we created with start_new_session: the process and its children
        except ProcessLookupError:
            pass

    for sig in [signal.SIGTERM] * sigterms + [signal.SIGKILL]:
        if not is_running(pid):
            break
        signal_group(sig)
        deadline = time.monotonic() + grace_s
        while is_running(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    signal_group(signal.SIGKILL)  # children the leader left behind, if any


def stop_server(root: Path) -> bool:
    """Stop the background server; False when none was running."""
    state = read_state(root, "server")
    if state:
        stop_process(state["pid"])
    _state_path(root, "server").unlink(missing_ok=True)
    return state is not None


class InfraError(RuntimeError):
    """The local Prefect infrastructure is not in the state a command needs (no server, a port in use)."""


def _require_server(root: Path) -> dict:
    state = read_state(root, "server")
    if not state or not is_healthy(state["url"]):
        raise InfraError(
            f"no livo Prefect server is running here (no live server state under {root / STATE_DIR}): run "
            "`livo server start` (or `livo up`) in this directory"
        )
    return state


def project_dir(root: Path) -> Path:
    """The livo checkout whose prefect.yaml and flows are deployed: $LIVO_ROOT, else `root`."""
    return Path(os.environ.get("LIVO_ROOT", root)).resolve()


def _run_prefect(root: Path, api_url: str, *args: str) -> str:
    result = subprocess.run(
        _prefect("--no-prompt", *args), cwd=project_dir(root), env=_env(root, api_url), capture_output=True, text=True
    )
    if result.returncode:
        raise InfraError(f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def ensure_pool(root: Path, pool: str = "local") -> None:
    """Create the process work pool `pool` unless it exists."""
    api_url = _require_server(root)["url"]
    try:
        _get(f"{api_url}/work_pools/{pool}")
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise
        _run_prefect(root, api_url, "work-pool", "create", pool, "--type", "process")


def deployment_names(root: Path, pool: str) -> list[str]:
    """`flow-name/deployment` of every deployment of prefect.yaml that runs on `pool`."""
    config = yaml.safe_load((project_dir(root) / "prefect.yaml").read_text())
    return [
        f"{d['entrypoint'].rsplit(':', 1)[1].replace('_', '-')}/{d['name']}"
        for d in config["deployments"]
        if d["work_pool"]["name"] == pool
    ]


def deploy(root: Path, names: list[str]) -> None:
    """`prefect deploy -n NAME ...` from prefect.yaml, without prompts."""
    if names:
        _run_prefect(root, _require_server(root)["url"], "deploy", *[arg for n in names for arg in ("-n", n)])


def _worker_name(pool: str, slot: int) -> str:
    return f"worker-{pool}" if slot == 0 else f"worker-{pool}-{slot}"


def start_worker(
    root: Path, pool: str = "local", slot: int = 0, limit: int | None = None, timeout_s: float = 60.0
) -> dict:
    """`prefect worker start --pool POOL` in the background, against our server; returns once it has sent its
    first heartbeat. `slot` numbers several workers of one pool on this machine; `limit` caps the flow runs one
    worker runs at once (1 per GPU: the GPU concurrency limit)."""
    process_name = _worker_name(pool, slot)
    state = read_state(root, process_name)
    if state:
        return state
    api_url, name = _require_server(root)["url"], f"livo-{socket.gethostname()}-{slot}-{time.time_ns()}"
    args = _prefect("worker", "start", "--pool", pool, "--name", name)
    state = _spawn(root, process_name, args + (["--limit", str(limit)] if limit else []), _env(root, api_url), api_url)
    deadline = time.monotonic() + timeout_s
    while name not in {w["name"] for w in _post(f"{api_url}/work_pools/{pool}/workers/filter", {})}:
        if not is_running(state["pid"]):
            _state_path(root, process_name).unlink(missing_ok=True)
            raise RuntimeError(f"the worker exited; end of {state['log']}:\n{_log_tail(state)}")
        if time.monotonic() > deadline:
            stop_worker(root, pool, slot)
            raise TimeoutError(f"the worker sent no heartbeat in {timeout_s:.0f} s; see {state['log']}")
        time.sleep(0.5)
    return state


def stop_worker(root: Path, pool: str = "local", slot: int = 0, kill: bool = False) -> bool:
    """Stop the background worker: a backgrounded worker ignores the first SIGTERM, so two, then SIGKILL.
    `kill`: SIGKILL at once, the worker and its flow runs (a crash, for fault tests)."""
    state = read_state(root, _worker_name(pool, slot))
    if state:
        stop_process(state["pid"], sigterms=0 if kill else 2, grace_s=10.0)
    _state_path(root, _worker_name(pool, slot)).unlink(missing_ok=True)
    return state is not None


def stop_workers(root: Path, pool: str = "local") -> int:
    """Stop every background worker of `pool` started from `root`; returns how many were running."""
    names = [p.stem for p in (Path(root).resolve() / STATE_DIR).glob(f"worker-{pool}*.json")]
    slots = [int(m.group(1) or 0) for n in names if (m := re.fullmatch(rf"worker-{re.escape(pool)}(?:-(\d+))?", n))]
    return sum(stop_worker(root, pool, slot) for slot in sorted(slots))


def run_deployment(root: Path, name: str, params: dict | None = None) -> str:
    """`prefect deployment run NAME [--params JSON]`; returns the id of the flow run it created."""
    extra = ["--params", json.dumps(params)] if params else []
    output = _run_prefect(root, _require_server(root)["url"], "deployment", "run", name, *extra)
    match = re.search(r"UUID: ([0-9a-f-]{36})", output)
    if not match:
        raise RuntimeError(f"no flow run id in the output of `prefect deployment run {name}`:\n{output}")
    return match.group(1)


def wait_for_flow_run(root: Path, flow_run_id: str, poll_s: float = 5.0, timeout_s: float | None = None) -> dict:
    """Poll the flow run until its state is terminal; returns that state (type, name, message)."""
    api_url = _require_server(root)["url"]
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        state = _get(f"{api_url}/flow_runs/{flow_run_id}")["state"] or {}
        if state.get("type") in TERMINAL_STATES:
            return state
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"flow run {flow_run_id} still {state.get('name')} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def flow_run_artifacts(root: Path, flow_run_id: str) -> list[dict]:
    """The artifacts (key, type, description) a flow run created, oldest first."""
    api_url = _require_server(root)["url"]
    artifacts = _post(f"{api_url}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    return sorted(artifacts, key=lambda a: a["created"])


def flow_run_ui_url(root: Path, flow_run_id: str) -> str:
    """The flow run's page in the Prefect UI (served by the same server as the API)."""
    return f"{_require_server(root)['url'].removesuffix('/api')}/runs/flow-run/{flow_run_id}"


def latest_artifact(root: Path, key: str) -> dict:
    """The newest artifact with `key` on the local server."""
    api_url = _require_server(root)["url"]
    found = _post(f"{api_url}/artifacts/latest/filter", {"artifacts": {"key": {"any_": [key]}}, "limit": 1})
    if not found:
        raise LookupError(f"no artifact {key!r} on {api_url}: run the flow that creates it first")
    return found[0]


def latest_flow_run(root: Path, deployment: str) -> dict:
    """The newest flow run of `deployment` (FLOW/NAME) on the local server."""
    api_url = _require_server(root)["url"]
    flow_name, name = deployment.split("/", 1)
    body = {
        "flows": {"name": {"any_": [flow_name]}},
        "deployments": {"name": {"any_": [name]}},
        "sort": "START_TIME_DESC",
        "limit": 1,
    }
    found = _post(f"{api_url}/flow_runs/filter", body)
    if not found:
        raise LookupError(f"no flow run of {deployment} on {api_url}: run `livo run-deployment {deployment}` first")
    return found[0]


def screenshot_artifact(root: Path, key: str, out: Path) -> Path:
    """The newest `key` artifact's page of the Prefect UI, as a PNG."""
    _browser()
    artifact = latest_artifact(root, key)
    ui = _require_server(root)["url"].removesuffix("/api")
    return screenshot_page(f"{ui}/artifacts/artifact/{artifact['latest_id']}", out, height=2600)


def screenshot_flow_run(root: Path, deployment: str, out: Path) -> Path:
    """The newest flow run of `deployment` in the Prefect UI (its run graph: every task and subflow), as a PNG."""
    _browser()
    return screenshot_page(flow_run_ui_url(root, latest_flow_run(root, deployment)["id"]), out, height=1400)


def _browser() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise FileNotFoundError("no chromium on PATH: `apt-get install chromium` (Debian) and try again")
    return browser


def screenshot_page(url: str, out: Path, width: int = 1400, height: int = 2600) -> Path:
    """Open `url` in headless Chromium and save a PNG screenshot."""
    browser, out = _browser(), Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            "--virtual-time-budget=20000",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    if not out.is_file() or out.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot of {url} to {out}")
    return out
