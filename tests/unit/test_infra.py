"""livo_core.infra against a real Prefect server: start in the background, health, stop, nothing left behind."""

from pathlib import Path

from livo_core import infra
from tests.helpers.ports import free_port


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
