"""Structured JSON logs, one line per record, carrying the request id and never PHI."""

from __future__ import annotations

import json
import logging
import sys

from flask import Flask, g, has_request_context


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object; json escapes CR/LF so input cannot forge lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if has_request_context() and g.get("request_id"):
            entry["request_id"] = g.request_id
        return json.dumps(entry, ensure_ascii=True)


def init_app(app: Flask) -> None:
    """Send the app's logs to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    app.logger.handlers[:] = [handler]
    app.logger.setLevel(logging.INFO)
    app.logger.propagate = True  # lets tests capture records with caplog
