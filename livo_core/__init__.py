"""livo: align text-to-image diffusion models with human values (LiVO). All logic, no Prefect."""

__version__ = "0.1.0"
