"""Scrubbing secrets out of text: known secret values, URL credentials and token headers.

The secret manager registers every value it hands out with `register_secret()`;
`RedactionFilter` then rewrites log records (message, arguments and traceback)
before any handler writes them, and the CLI passes error messages through
`redact()` too.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback

from revoctl.core.references import PREFIX

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not registered: masking every "abc" would garble logs, not protect them."""

# A `${secret:NAME}` reference is a name, not a value: it stays readable.
_NOT_A_REFERENCE = f"(?!{re.escape(PREFIX)})"
_URL_CREDENTIALS = re.compile(
    rf"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:){_NOT_A_REFERENCE}[^@\s]+(?=@)"
)
# One whole URL, read as SQLAlchemy reads it: the password runs to the first "@".
_URL_PASSWORD = re.compile(
    rf"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:){_NOT_A_REFERENCE}[^@]*(?=@)"
)
_TOKEN_HEADER = re.compile(
    r"(?i)(?P<head>(?<!\$\{)\b(?:authorization|proxy-authorization|x-api-key|api-key|x-identity-header|"
    r"secret|client_secret|password|passwd|pwd|token|access_token|refresh_token|cookie|set-cookie)"
    r"[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|basic\s+)?)(?P<value>[^\s\"',;&]+)"
)
_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")


class Redactor:
    """Known secret values plus patterns that look like credentials."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        """Mask ``value`` wherever it appears from now on."""
        if len(value) < MIN_SECRET_LENGTH or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        """``text`` with every known secret value and credential-looking token masked."""
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        text = _URL_CREDENTIALS.sub(rf"\g<head>{MASK}", text)
        text = _TOKEN_HEADER.sub(rf"\g<head>{MASK}", text)
        return _BEARER.sub(rf"\g<head>{MASK}", text)


_redactor = Redactor()
register_secret = _redactor.register
redact = _redactor.redact


def redact_url(url: str) -> str:
    """One URL with its password masked, however unusual the password's characters."""
    return redact(_URL_PASSWORD.sub(rf"\g<head>{MASK}", url))


def redact_exception(exc: BaseException) -> str:
    """A traceback of ``exc``, redacted, for ``-v`` output."""
    return redact("".join(traceback.format_exception(exc)))


class RedactionFilter(logging.Filter):
    """Rewrites each record so that no handler can write a secret.

    The message is formatted once here (arguments included) and the traceback is
    rendered to ``exc_text``, both redacted; ``exc_info`` is then dropped so that
    no formatter renders the raw traceback again.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_exception(record.exc_info[1]).rstrip("\n")
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
