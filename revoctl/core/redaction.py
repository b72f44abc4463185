"""Scrubbing secrets out of text: known secret values, URL credentials and token headers.

The secret manager registers every value it hands out with `register_secret()`,
in each form the value can take on its way into text: percent-encoded (as in a
URL), ``+`` for spaces (a query string), JSON-escaped, and with its line breaks
folded (as a one-line error shows it). `install_log_redaction()` then scrubs every
log record as it is created, whichever handler writes it later (the runtime's,
uvicorn's, the library user's); health reports and CLI errors go through
`redact()` / `redact_data()` too.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, quote_plus

from revoctl.core.references import PATTERN as REFERENCE
from revoctl.core.references import PREFIX

_ASIDE = re.compile("\x00(\\d+)\x00")


MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not registered: masking every "abc" would garble logs, not protect them."""

# A `${secret:NAME}` reference is a name, not a value: it stays readable.
_NOT_A_REFERENCE = f"(?!{re.escape(PREFIX)}|\x00)"
_URL_CREDENTIALS = re.compile(
    rf"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#@\s]*:){_NOT_A_REFERENCE}[^@\s]+(?=@)"
)
# One whole URL, read as SQLAlchemy reads it: the password runs to the first "@".
_URL_PASSWORD = re.compile(
    rf"^(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@]*:){_NOT_A_REFERENCE}[^@]*(?=@)"
)
SECRET_WORDS = (
    "password", "passwd", "pwd", "secret", "client_secret", "token", "access_token",
    "refresh_token", "api_key", "apikey", "api-key", "x-api-key", "credential", "private_key",
    "admin_key",
    "authorization", "proxy-authorization", "x-identity-header", "cookie", "set-cookie",
)  # fmt: skip
"""Names whose values are secrets: as a settings key, a header, or ``name=value`` in text."""
_WORDS = "|".join(sorted((re.escape(word) for word in SECRET_WORDS), key=len, reverse=True))
SECRET_KEY = re.compile(rf"(?i)(?:^|[._-])(?:{_WORDS})$")
"""A settings key (its last part) that names a secret, e.g. ``providers.openai.api_key``."""
_TOKEN_HEADER = re.compile(
    rf"(?i)(?P<head>(?<!\$\{{)\b(?:{_WORDS})(?P<close>[\"']?)\s*(?P<sep>[:=])(?P<space>\s*)"
    r"(?P<open>[\"']?)(?P<scheme>(?:bearer\s+|basic\s+)?))(?P<value>(?!\x00)[^\s\"',;&]+)"
)
_WORD = re.compile(r"[a-z]+")
"""A lowercase word: after ``secret: `` in a sentence, prose (``create it first``), not a value."""
_BEARER = re.compile(r"(?i)(?P<head>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")


class Redactor:
    """Known secret values plus patterns that look like credentials."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        """Mask ``value``, in every form it takes in text, wherever it appears from now on."""
        forms = {form for form in _forms(value) if len(form) >= MIN_SECRET_LENGTH}
        if forms <= self._values:
            return
        with self._lock:
            self._values |= forms
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(v) for v in ordered))

    def redact(self, text: str) -> str:
        """``text`` with every known secret value and credential-looking token masked.

        ``${secret:NAME}`` references are names, not values: they are set aside before
        the credential patterns run (a reference in a URL's user part must not read as
        ``user:password``) and put back after.
        """
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return _references_aside(text, _mask_credentials)


def _mask_credentials(text: str) -> str:
    text = _URL_CREDENTIALS.sub(rf"\g<head>{MASK}", text)
    text = _TOKEN_HEADER.sub(_mask_token, text)
    return _BEARER.sub(rf"\g<head>{MASK}", text)


def _mask_token(match: re.Match[str]) -> str:
    """``name: value`` / ``name=value`` with the value masked, unless it reads as prose: a
    lowercase word after a colon and a space, unquoted and with no auth scheme (``an
    existing secret: create it first``). A value joined by ``=``, quoted, or with any digit,
    capital or symbol in it is masked; a known secret is masked before this, whatever it is."""
    prose = (
        match["sep"] == ":"
        and match["space"]
        and not (match["close"] or match["open"] or match["scheme"])
        and _WORD.fullmatch(match["value"])
    )
    return match[0] if prose else match["head"] + MASK


def _references_aside(text: str, mask: Callable[[str], str]) -> str:
    """``mask(text)`` with every ``${secret:NAME}`` reference kept out of its reach."""
    if PREFIX not in text:
        return mask(text)
    references: list[str] = []

    def set_aside(match: re.Match[str]) -> str:
        references.append(match.group(0))
        return f"\x00{len(references) - 1}\x00"

    masked = mask(REFERENCE.sub(set_aside, text))
    return _ASIDE.sub(lambda match: references[int(match.group(1))], masked)


def _forms(value: str) -> set[str]:
    """``value`` as it may reach text: raw, URL-encoded, JSON-escaped, lines folded."""
    folded = " ".join(value.split())
    return {
        value,
        quote(value, safe=""),
        quote(value, safe="/"),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        folded,
        *(line.strip() for line in value.splitlines() if len(value.splitlines()) > 1),
    }


_redactor = Redactor()
register_secret = _redactor.register
redact = _redactor.redact


def redact_data(data: Any) -> Any:
    """``data`` (JSON-like) with every string in it redacted, keys included."""
    if isinstance(data, str):
        return redact(data)
    if isinstance(data, dict):
        return {redact_data(key): redact_data(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [redact_data(item) for item in data]
    return data


def redact_url(url: str) -> str:
    """One URL with its password masked, however unusual the password's characters."""
    return redact(_references_aside(url, lambda text: _URL_PASSWORD.sub(rf"\g<head>{MASK}", text)))


def redact_exception(exc: BaseException) -> str:
    """A traceback of ``exc``, redacted, for ``-v`` output."""
    return redact("".join(traceback.format_exception(exc)))


_installed = False


def install_log_redaction() -> None:
    """Scrub every log record as it is created, so that no handler can write a secret.

    Installed once per process by `load_services()` and the CLI. The message and each
    argument are redacted in place (arguments keep their positions: formatters such as
    uvicorn's read them), and a traceback is rendered, redacted, into ``exc_text``.
    """
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _scrub(record)
        return record

    logging.setLogRecordFactory(factory)
    _installed = True


def _scrub(record: logging.LogRecord) -> None:
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    if isinstance(record.args, tuple):
        record.args = tuple(_scrub_argument(arg) for arg in record.args)
    elif isinstance(record.args, dict):
        record.args = {key: _scrub_argument(arg) for key, arg in record.args.items()}
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact_exception(record.exc_info[1]).rstrip("\n")
        record.exc_info = None
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _scrub_argument(arg: Any) -> Any:
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    try:
        text = str(arg)
    except Exception:  # an argument that cannot be shown is left for the formatter to report
        return arg
    cleaned = redact(text)
    return arg if cleaned == text else cleaned


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
