"""Prefect flows: the pipeline diagrams, wiring the tasks of `tasks/` (deployments in ../prefect.yaml)."""
