"""The application for ``audit_bench.py overhead`` (benchmark only): the real enquiry form, audited or not.

Configured from ``CRM_*`` variables like any deployment. With ``BENCH_AUDIT=off`` the audit
append is replaced by a no-op, so the two servers the benchmark starts differ only by the
append. Both report how long the application spent on each request (``X-Service-Us``,
waits for the write lock included, the wait for a free worker not); the audited one also
reports the append's own duration (``X-Append-Us``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from flask import g
from werkzeug.wrappers import Response

from crm import audit, create_app

_record = audit.record


def _timed_record(*args: Any, **kwargs: Any) -> Any:
    """Append as usual, remembering how long the append took."""
    began = time.perf_counter()
    try:
        return _record(*args, **kwargs)
    finally:
        g.append_us = g.get("append_us", 0) + round((time.perf_counter() - began) * 1e6)


def _no_record(*_args: Any, **_kwargs: Any) -> None:
    """The unaudited baseline: everything else about the request is unchanged."""


def _start_clock() -> None:
    g.began = time.perf_counter()


def _report_times(response: Response) -> Response:
    response.headers["X-Service-Us"] = str(round((time.perf_counter() - g.began) * 1e6))
    if "append_us" in g:
        response.headers["X-Append-Us"] = str(g.append_us)
    return response


audit.record = _no_record if os.environ.get("BENCH_AUDIT") == "off" else _timed_record
app = create_app()
app.before_request_funcs.setdefault(None, []).insert(0, _start_clock)
app.after_request(_report_times)
