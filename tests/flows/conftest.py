import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session")
def prefect_harness():
    """Every flow of the session runs against one temporary Prefect server and SQLite database."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
