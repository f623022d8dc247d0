"""Prefect tasks: thin wrappers, each calling one `livo_core` function (the logic is tested there, not here)."""
