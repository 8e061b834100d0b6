"""Error and log paths: the last-resort handler shows no trace, log lines cannot be forged or carry PHI."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from crm import create_app
from crm.access import public
from crm.logs import JsonFormatter
from crm.settings import ConfigError
from tests import sentinels


@pytest.fixture
def live_config(config):
    """TESTING off, as in a real deployment (the database schema is still made by the fixture)."""
    config.update(TESTING=False, AUTO_MIGRATE=False)
    return config


def test_a_raising_route_reaches_the_last_resort_handler_without_a_trace(live_config, request, caplog):
    app = request.getfixturevalue("app")

    @public
    def failing():
        raise RuntimeError(f"lookup failed for {sentinels.EMAIL} born {sentinels.DOB}")

    app.add_url_rule("/failing", "public.failing", failing)
    assert app.debug is False and app.testing is False and not app.config["PROPAGATE_EXCEPTIONS"]
    response = app.test_client().get("/failing")
    page = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong on our side" in page and app.config["CLINIC_PHONE"] in page
    for trace in ("Traceback", "RuntimeError", "lookup failed", sentinels.EMAIL, sentinels.DOB, 'File "'):
        assert trace not in page
    request_id = response.headers["X-Request-Id"]
    [record] = [r for r in caplog.records if r.getMessage().startswith("unhandled")]
    assert record.getMessage() == f"unhandled RuntimeError in request {request_id}"
    line = JsonFormatter().format(record)
    assert sentinels.EMAIL not in line and "Traceback" not in line


def test_production_refuses_to_start_with_the_debugger_on(live_config, tmp_path):
    live_config.update(MODE="production", DEBUG=True, KEYRING_FILE=None, BASE_URL="https://crm.clinic.example",
                       DATABASE_TLS_REASON="the test database runs on this host")
    with pytest.raises(ConfigError, match="DEBUG is on in production"):
        create_app(live_config, instance_path=str(tmp_path / "debug-instance"))


def _record(message: str, *args, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("crm", logging.ERROR, __file__, 1, message, args, exc_info)


def test_json_log_lines_escape_cr_and_lf_so_input_cannot_forge_a_line():
    forged = 'eve@example.org\r\n{"at": "2026-01-01", "level": "INFO", "message": "admin signed in"}\u2028x'
    line = JsonFormatter().format(_record("sign-in refused for %s", forged))
    assert "\n" not in line and "\r" not in line and "\u2028" not in line
    assert json.loads(line)["message"] == f"sign-in refused for {forged}"
    assert len(f"{line}\n".splitlines()) == 1


def test_json_log_lines_never_carry_a_traceback_or_the_exception_text():
    try:
        raise ValueError(f"no lead for {sentinels.PHONE}, ZIP {sentinels.ZIP_CODE}")
    except ValueError:
        record = _record("lookup failed", exc_info=sys.exc_info())
    logging.Formatter().format(record)  # another handler (caplog) has formatted and cached the trace
    assert record.exc_text and sentinels.PHONE in record.exc_text
    line = JsonFormatter().format(record)
    assert json.loads(line)["message"] == "lookup failed"
    assert sentinels.PHONE not in line and sentinels.ZIP_CODE not in line and "Traceback" not in line
