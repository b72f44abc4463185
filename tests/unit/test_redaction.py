"""Redaction: known values, URL credentials and token headers never reach a log line."""

from __future__ import annotations

import io
import json
import logging

import pytest

from revoctl.core.logs import configure_logging
from revoctl.core.redaction import Redactor, redact, register_secret


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("connect postgresql://app:Sup3rS3cret@db:5432/app failed", "Sup3rS3cret"),
        ("redis://:r3dispass@cache:6379/0", "r3dispass"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("headers={'x-api-key': 'sk-live-123456789'}", "sk-live-123456789"),
        ("api-key=abcd1234efgh", "abcd1234efgh"),
        ("password=hunter2hunter2 user=bob", "hunter2hunter2"),
        ("X-IDENTITY-HEADER: 0123-4567-89ab", "0123-4567-89ab"),
    ],
)
def test_credentials_that_look_like_credentials_are_masked(text: str, leak: str) -> None:
    assert leak not in redact(text)
    assert "***" in redact(text)


def test_registered_values_are_masked_anywhere() -> None:
    redactor = Redactor()
    redactor.register("canary-7f3a9c")
    redactor.register("ab")  # too short to mask safely: ignored
    assert (
        redactor.redact("value is canary-7f3a9c, again canary-7f3a9c") == "value is ***, again ***"
    )
    assert redactor.redact("about ab") == "about ab"


def test_longest_value_wins_when_one_contains_another() -> None:
    redactor = Redactor()
    redactor.register("secret-value")
    redactor.register("secret-value-long")
    assert redactor.redact("x secret-value-long y") == "x *** y"


def test_plain_text_is_untouched() -> None:
    text = "GET /v1/models 200 in 12.5 ms for user alice"
    assert redact(text) == text


def test_log_records_and_tracebacks_are_redacted_in_json_lines() -> None:
    register_secret("canary-logging-91c2")
    stream = io.StringIO()
    handler = configure_logging("debug", "json", stream=stream)
    log = logging.getLogger("revoctl.test")
    try:
        log.info("using key %s", "canary-logging-91c2", extra={"service": "openai_api"})
        try:
            raise RuntimeError("provider said canary-logging-91c2 is bad")
        except RuntimeError:
            log.exception("call failed for postgresql://u:pw123456@h/db")
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert "canary-logging-91c2" not in output and "pw123456" not in output
    first, second = (json.loads(line) for line in output.splitlines())
    assert first["message"] == "using key ***"
    assert first["service"] == "openai_api" and first["level"] == "info"
    assert "RuntimeError: provider said *** is bad" in second["exception"]


@pytest.mark.parametrize(
    ("url", "leak"),
    [
        ("postgresql+asyncpg://u:pa ss@h/db", "pa ss"),
        ("postgresql+asyncpg://u:p/w?x#y@h/db", "p/w?x#y"),
        ("redis://:only:colons:here@cache:6379/0", "only:colons:here"),
    ],
)
def test_a_whole_url_loses_any_password(url: str, leak: str) -> None:
    from revoctl.core.redaction import redact_url

    masked = redact_url(url)
    assert leak not in masked
    assert masked.endswith("***@" + url.rsplit("@", 1)[1])


def test_free_text_urls_with_slashes_in_the_password_are_masked() -> None:
    assert redact("dial postgresql://u:p/w#1@h/db now") == "dial postgresql://u:***@h/db now"


def test_secret_references_and_ports_stay_readable() -> None:
    from revoctl.core.redaction import redact_url

    ref = "postgresql+asyncpg://app:${secret:db-password}@db/app"
    assert redact_url(ref) == ref
    assert redact("see http://host:8080/path for user@example.com") == (
        "see http://host:8080/path for user@example.com"
    )


def test_verbose_shows_revoctl_info_but_not_library_chatter() -> None:
    stream = io.StringIO()
    handler = configure_logging("info", "text", stream=stream)
    try:
        logging.getLogger("revoctl.db").info("revoctl says")
        logging.getLogger("alembic.runtime").info("alembic chatter")
        logging.getLogger("alembic.runtime").warning("alembic warns")
    finally:
        logging.getLogger().removeHandler(handler)
    output = stream.getvalue()
    assert "revoctl says" in output and "alembic warns" in output
    assert "alembic chatter" not in output


def test_every_form_of_a_value_is_masked() -> None:
    """A value with URL characters reaches text percent-encoded (an error naming a URL),
    with '+' for spaces (a query string), JSON-escaped, or with its lines folded (a one-line
    error); each form is masked, and the form a reference takes stays readable."""
    from urllib.parse import quote, quote_plus

    from revoctl.core.redaction import redact, register_secret

    value = 'CANARY@x y/"z"\nline2'
    register_secret(value)
    for form in (
        value,
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        " ".join(value.split()),
    ):
        assert "CANARY" not in redact(f"role {form} does not exist"), form
    assert redact("password=${secret:db-pw}") == "password=${secret:db-pw}"
    assert redact("postgresql://${secret:u}@h/${secret:db}") == (
        "postgresql://${secret:u}@h/${secret:db}"
    )


def test_log_records_are_scrubbed_for_any_handler_and_keep_their_arguments() -> None:
    import logging

    from revoctl.core.redaction import install_log_redaction, register_secret

    install_log_redaction()
    register_secret("hunter2-canary")
    record = logging.getLogger("uvicorn.access").makeRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", "/x?key=hunter2-canary", "1.1", 200),
        None,
    )
    assert record.args is not None and len(record.args) == 5  # formatters read them by position
    assert "hunter2-canary" not in record.getMessage()
    assert record.getMessage().endswith("200")


def test_json_lines_carry_no_terminal_colour_codes() -> None:
    """uvicorn's records carry ``color_message``, the message with ANSI codes for a terminal;
    a JSON line has the plain message only."""
    import json
    import logging

    from revoctl.core.log_handler import JsonFormatter

    record = logging.makeLogRecord(
        {
            "name": "uvicorn.error",
            "msg": "Started server process [%d]",
            "args": (42,),
            "color_message": "Started server process [\x1b[36m%d\x1b[0m]",
            "request_id": "r-1",
        }
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "Started server process [42]"
    assert "color_message" not in entry and entry["request_id"] == "r-1"
