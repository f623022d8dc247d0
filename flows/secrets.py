"""API keys from Prefect Secret blocks, for workers whose environment has none: the block named after the variable
(OPENAI_API_KEY -> `openai-api-key`) is read into this process's environment, where livo_core's clients look."""

import os

from prefect.blocks.system import Secret


def block_name(env_var: str) -> str:
    return env_var.lower().replace("_", "-")


def load_api_key(env_var: str) -> bool:
    """Unless `env_var` is set, set it from the Secret block of the same name; False when neither exists (the client
    that needs the key then says which variable to set)."""
    if os.environ.get(env_var):
        return True
    try:
        secret = Secret.load(block_name(env_var))
    except ValueError:  # no such block
        return False
    os.environ[env_var] = secret.get()
    return True
