"""Shared plumbing for OpenAI-compatible LLM calls: the client from the environment, transient errors, retry waits."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import openai
from tenacity import RetryCallState, wait_exponential

logger = logging.getLogger(__name__)

ENDPOINT_ENV = "LIVO_LLM_BASE_URL"  # the OpenAI-compatible endpoint, e.g. http://localhost:8000/v1
DEFAULT_API_KEY_ENV = "OPENAI_API_KEY"
# worth another try: connection errors and timeouts (APITimeoutError is an APIConnectionError), 429, 5xx
TRANSIENT_ERRORS = (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError)


def endpoint(base_url: str | None = None) -> str | None:
    """The configured endpoint: `base_url`, else the LIVO_LLM_BASE_URL environment variable, else None."""
    return base_url or os.environ.get(ENDPOINT_ENV) or None


def build_client(
    base_url: str | None = None, api_key_env: str = DEFAULT_API_KEY_ENV, timeout_s: float = 600.0
) -> openai.OpenAI:
    """An `openai.OpenAI` client for `endpoint(base_url)`, its key read from the environment variable `api_key_env`.

    `max_retries=0`: the caller's retry policy is the only one. Without `base_url` or LIVO_LLM_BASE_URL the client
    talks to the OpenAI API. The key is never an argument, so it cannot end up in a config, a log or a file.
    """
    api_key = os.environ.get(api_key_env)
    if not api_key:
        raise openai.OpenAIError(
            f"no API key: set the environment variable {api_key_env} (any non-empty value for an endpoint without keys)"
        )
    return openai.OpenAI(base_url=endpoint(base_url), api_key=api_key, max_retries=0, timeout=timeout_s)


def rejects_response_format(error: openai.APIStatusError) -> bool:
    """Whether `error` rejects the request's response format: a 400, or any status whose error names the format or a
    schema (llama-cpp-python's server answers an unknown format with 500 and its validation message)."""
    return error.status_code == 400 or re.search(r"response_format|schema", str(error), re.IGNORECASE) is not None


def retry_after_s(error: BaseException | None) -> float | None:
    """Seconds the server asked to wait (`retry-after-ms`, or `Retry-After` in seconds or as an HTTP date)."""
    if not isinstance(error, openai.APIStatusError):
        return None
    headers = error.response.headers
    try:
        if (milliseconds := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(milliseconds) / 1000)
        if (value := headers.get("retry-after")) is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None  # unparsable header: the exponential wait applies


def wait_retry_after(first_s: float, max_s: float) -> Callable[[RetryCallState], float]:
    """A tenacity wait: the server's Retry-After when it sent one, else `first_s` x 1, 2, 4 ...; never above `max_s`."""
    exponential = wait_exponential(multiplier=first_s, max=max_s)

    def wait(state: RetryCallState) -> float:
        seconds = retry_after_s(state.outcome.exception() if state.outcome else None)
        return exponential(state) if seconds is None else min(seconds, max_s)

    return wait


def log_retry(state: RetryCallState) -> None:
    """Log a failed LLM attempt (the error only: never the client, so never the API key)."""
    error = state.outcome.exception() if state.outcome else None
    logger.warning("LLM attempt %d failed: %s", state.attempt_number, error)
