"""Secrets redacted by value: the one place that knows what a key looks like and scrubs it.

Why by value: servers and proxies echo the key they were sent, in error bodies, in
malformed 200 bodies and in headers that the HTTP libraries print at DEBUG; a key is
often bare (no ``sk-`` prefix), so patterns alone miss it. This module knows the exact
values of the key variables (the usual ones, :data:`KEY_VARIABLES`, plus every variable
a scorer registers, e.g. a judge's ``api_key_env``) and replaces them, and the usual
key patterns, with ``[redacted]`` in any text that could hold a response body: error
texts and null reasons before they reach a record, the manifest before it is written,
every log record as it is created (:func:`install_log_scrubber`), and what the CLI
prints.

Values are read from the environment at each scrub, so a key exported after start-up is
still found. Values shorter than :data:`MIN_SECRET_CHARS` are not treated as secrets:
placeholders such as ``EMPTY`` (sent to local servers) and short words would otherwise be
scrubbed out of ordinary text.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable
from typing import Any

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 8

KEY_VARIABLES = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_HUB_TOKEN",
    "AZURE_OPENAI_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "MISTRAL_API_KEY",
    "TOGETHER_API_KEY",
    "GROQ_API_KEY",
    "OPENROUTER_API_KEY",
    "WANDB_API_KEY",
)
"""Variables whose values are always secrets, whether or not a scorer uses them."""

PATTERNS = (
    # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-) and look-alikes
    re.compile(r"\bsk-[A-Za-z0-9_\-*]{6,}"),
    # Hugging Face user and organisation tokens
    re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{16,}"),
    # an Authorization header's credentials; keeps the scheme word
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9_\-.=+/*~]{3,}"),
    # key=..., "api_key": "...", x-api-key: ... ; keeps the name
    re.compile(
        r"(?i)((?:api[_-]?key|access[_-]?token|secret|password|x-api-key)[\"'\s]*[:=]\s*[\"']?)"
        r"[A-Za-z0-9_\-.+/*~]{6,}"
    ),
)

_lock = threading.Lock()
_variables: set[str] = set(KEY_VARIABLES)
_values: set[str] = set()


def register_variable(name: str | None) -> None:
    """Treat the value of environment variable ``name`` as a secret from now on."""
    if name:
        with _lock:
            _variables.add(name)


def register_value(value: str | None) -> None:
    """Treat ``value`` (a key read from somewhere other than the environment) as a secret."""
    if value and len(value) >= MIN_SECRET_CHARS:
        with _lock:
            _values.add(value)


def secret_values() -> list[str]:
    """Every known secret value, longest first (so a key containing another is replaced
    whole)."""
    with _lock:
        names, values = sorted(_variables), set(_values)
    for name in names:
        value = os.environ.get(name)
        if value and len(value) >= MIN_SECRET_CHARS:
            values.add(value)
            values.add(value.strip())
    return sorted((v for v in values if len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)


def _pattern_sub(match: re.Match[str]) -> str:
    return (match.group(1) if match.re.groups else "") + REDACTED


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every secret value (known ones and ``extra``) and every key-like
    string replaced by ``[redacted]``."""
    if not text:
        return text
    values = secret_values()
    values += sorted((v for v in extra if v and len(v) >= MIN_SECRET_CHARS), key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern in PATTERNS:
        text = pattern.sub(_pattern_sub, text)
    return text


def scrub_data(data: Any) -> Any:
    """A copy of JSON-like ``data`` with every string (keys included) scrubbed."""
    if isinstance(data, str):
        return scrub(data)
    if isinstance(data, dict):
        return {scrub_data(k): scrub_data(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [scrub_data(v) for v in data]
    return data


_installed = False


def install_log_scrubber() -> None:
    """Scrub every log record as it is created, whichever logger or handler it meets.

    A record factory, not a handler filter: a filter sees only the handlers it is
    attached to, while libraries (httpx, httpcore, openai) log through their own loggers
    to handlers that tests, notebooks or the user's logging configuration add. The
    message is formatted and scrubbed eagerly (and a traceback, if any), which costs
    only for records that pass their logger's level. Idempotent."""
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: leave it for logging to report
            return record
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(formatter.formatException(record.exc_info))
        return record

    logging.setLogRecordFactory(factory)


def install_excepthook() -> None:
    """Print uncaught exceptions' tracebacks scrubbed (the CLI's last line of defence)."""
    import sys
    import traceback

    def hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        sys.stderr.write(scrub("".join(traceback.format_exception(kind, exc, tb))))

    sys.excepthook = hook
