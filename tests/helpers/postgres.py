"""A throwaway PostgreSQL server on 127.0.0.1 (Debian's `postgresql` package), for the Prefect server's database."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers.ports import free_port


def _bin_dir() -> Path:
    """The server binaries: on PATH, else Debian's /usr/lib/postgresql/<newest>/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("no PostgreSQL server binaries: `apt-get install postgresql` (.ci/run does it)")
    return versions[-1].parent


@contextmanager
def postgres_server(timeout_s: float = 60.0) -> Iterator[str]:
    """Start a fresh cluster (trust auth on 127.0.0.1 only, no fsync), yield its asyncpg URL, stop and delete it.

    As root, the server runs as the `postgres` user (it refuses root)."""
    bin_dir, port = _bin_dir(), free_port()
    data = Path(tempfile.mkdtemp(prefix="livo-pg-"))
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(data, "postgres")
    server = None
    try:
        subprocess.run(
            [*as_user, bin_dir / "initdb", "-D", data / "db", "-U", "postgres", "-A", "trust", "--no-sync"],
            check=True,
            capture_output=True,
        )
        server = subprocess.Popen(
            [*as_user, bin_dir / "postgres", "-D", data / "db", "-h", "127.0.0.1", "-p", str(port), "-k", data, "-F"],
            stdout=subprocess.DEVNULL,
            stderr=open(data / "server.log", "wb"),  # noqa: SIM115 - the server's own log, closed with it
            start_new_session=True,
        )
        _wait_ready(bin_dir, port, server, data, timeout_s)
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGINT)  # fast shutdown: roll back, close connections, exit
            server.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


def _wait_ready(bin_dir: Path, port: int, server: subprocess.Popen, data: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while subprocess.run([bin_dir / "pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode:
        if server.poll() is not None or time.monotonic() > deadline:
            log = (data / "server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}:\n{log}")
        time.sleep(0.2)


def query(database_url: str, sql: str) -> str:
    """One value from `psql` against the server of `database_url` (as the test reads it, not through Prefect)."""
    host_port = database_url.rpartition("@")[2].split("/")[0]
    host, port = host_port.split(":")
    result = subprocess.run(
        [_bin_dir() / "psql", "-h", host, "-p", port, "-U", "postgres", "-d", "postgres", "-F", "\t", "-tAc", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


def query_rows(database_url: str, sql: str) -> list[list[str]]:
    """The rows of `sql` from `psql`, each a list of its values as text (NULL: "")."""
    return [line.split("\t") for line in query(database_url, sql).splitlines()]
