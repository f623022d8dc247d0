"""Config folders given as fsspec URLs, worked on in local mirrors (`livo_core.remote`); pulls and pushes go to
the flow run's log."""

from typing import TypeVar

from prefect import get_run_logger
from pydantic import BaseModel

from livo_core.remote import Mirror, mirror_of

Config = TypeVar("Config", bound=BaseModel)


def working_copy(config: Config, *fields: str) -> tuple[dict[str, Mirror], Config]:
    """Pull each of `fields` that is a URL into its mirror; returns the mirrors by field and the config pointing
    at the local folders (the others unchanged)."""
    mirrors = {field: mirror for field in fields if (mirror := mirror_of(getattr(config, field)))}
    for mirror in mirrors.values():
        get_run_logger().info("%s: %d files pulled into %s", mirror.url, mirror.pull(), mirror.local)
    return mirrors, config.model_copy(update={field: str(mirror.local) for field, mirror in mirrors.items()})


def push(mirror: Mirror | None) -> None:
    """Push the mirror's new files to its URL (nothing for a local folder)."""
    if mirror:
        get_run_logger().info("%s: %d files pushed", mirror.url, mirror.push())
