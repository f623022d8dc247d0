"""livo_core.infra against a real Prefect server: start in the background, health, stop, nothing left behind."""

from pathlib import Path

from typer.testing import CliRunner

from livo_core import infra
from livo_core.cli import app
from tests.helpers.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def test_server_starts_answers_and_stops(tmp_path):
    port = free_port()
    try:
        state = infra.start_server(tmp_path, port=port, timeout_s=180)
        assert state["url"] == f"http://127.0.0.1:{port}/api"
        assert infra.is_healthy(state["url"])
        assert infra.read_state(tmp_path, "server") == state
        assert infra.start_server(tmp_path, port=port) == state  # already running: the same server
        assert (infra.prefect_home(tmp_path) / "prefect.db").is_file()  # SQLite in our PREFECT_HOME
    finally:
        stopped = infra.stop_server(tmp_path)

    assert stopped
    assert not infra.is_running(state["pid"]) and not Path(f"/proc/{state['pid']}").exists()
    assert not infra.is_healthy(state["url"])
    assert infra.read_state(tmp_path, "server") is None
    assert not infra.stop_server(tmp_path)


def test_livo_up_then_stop_through_the_cli(tmp_path, monkeypatch):
    """The README's first step: `livo up` starts the server, deploys pool local's deployments and a worker;
    `livo worker stop` and `livo server stop` end them."""
    monkeypatch.setenv("LIVO_ROOT", str(REPO))  # the checkout whose prefect.yaml is deployed
    monkeypatch.delenv("LIVO_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # state and logs under tmp_path/.livo
    runner, port = CliRunner(), free_port()
    try:
        result = runner.invoke(app, ["up", "--port", str(port)], env={"COLUMNS": "300"})
        assert result.exit_code == 0, result.output
        assert "build-dataset/local" in result.output and "generate-shard/local" in result.output
        server, worker = infra.read_state(tmp_path, "server"), infra.read_state(tmp_path, "worker-local")
        assert server["url"] == f"http://127.0.0.1:{port}/api" and server["database"].startswith("sqlite")
        assert worker is not None
    finally:
        stopped_workers = runner.invoke(app, ["worker", "stop"]).output
        stopped_server = runner.invoke(app, ["server", "stop"]).output

    assert "1 worker(s) stopped" in stopped_workers and "server stopped" in stopped_server
    assert not infra.is_running(worker["pid"]) and not infra.is_running(server["pid"])
