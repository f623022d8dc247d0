"""livo: align text-to-image diffusion models with human values (LiVO). All logic, no Prefect."""

import os

# With the default OpenMP wait policy, torch on small CPU machines runs up to 20x slower (threads spin against
# each other); PASSIVE fixes it. It must be set before torch starts, hence here, and only when the user has not.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.8.0"
