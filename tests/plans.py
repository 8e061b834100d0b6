"""Capture the SQL a request runs and read each statement's plan from the database itself.

Used by the plan tests: a page is served on a database holding thousands of demo leads
whose enquiries carry no idempotency digest (as seeded, imported or migrated rows do),
after ``ANALYZE`` / ``PRAGMA optimize`` gave the planner real statistics; then every
statement the page ran is explained, and any full scan of a table that grows with the
leads is reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event

from crm import statements
from crm.models import db

#: Tables that grow with the number of leads or events; a full scan of one is a defect.
GROWING = ("leads", "lead_keys", "enquiries", "insurances", "insurance_cards", "screenings",
           "contact_attempts", "callbacks", "lead_events", "audit_events")
_SQLITE_SCAN = re.compile(r"\bSCAN (\w+)( USING (COVERING )?INDEX (\w+))?")
_PG_SEQ_SCAN = re.compile(r"Seq Scan on (\w+)")
#: A sort of every matching row; SQLite's "RIGHT PART OF ORDER BY" and PostgreSQL's incremental
#: sort only order ties of an index's order, so a limit still stops them early.
_FULL_SORT = re.compile(r"TEMP B-TREE FOR ORDER BY|^\s*(->\s+)?Sort\s+\(")
_EXPLAINABLE = ("SELECT", "UPDATE", "DELETE", "INSERT", "WITH")
_READS = re.compile(r"\b(FROM|UPDATE)\s+\w", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    """One statement as the driver received it, with its parameters."""

    sql: str
    parameters: Any


@contextmanager
def captured(monkeypatch) -> Iterator[list[Statement]]:
    """Record every statement run through SQLAlchemy or :mod:`crm.statements` while the block runs."""
    seen: list[Statement] = []

    def listen(_conn, _cursor, sql, parameters, _context, _many):
        seen.append(Statement(sql, parameters))

    original_run, original_run_in_turn = statements.run, statements.run_in_turn

    def run(connection, sql, parameters, many=False):
        seen.append(Statement(sql, parameters[0] if many and parameters else parameters))
        return original_run(connection, sql, parameters, many)

    def run_in_turn(connection, calls):
        seen.extend(Statement(sql, parameters) for sql, parameters in calls)
        return original_run_in_turn(connection, calls)

    monkeypatch.setattr(statements, "run", run)
    monkeypatch.setattr(statements, "run_in_turn", run_in_turn)
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        yield seen
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
        monkeypatch.setattr(statements, "run", original_run)
        monkeypatch.setattr(statements, "run_in_turn", original_run_in_turn)


def analyze() -> None:
    """Give the planner statistics, as a production database has them."""
    with db.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA optimize")
        else:  # this schema's tables only: a bare ANALYZE walks every schema, other test runs' included
            conn.exec_driver_sql("ANALYZE " + ", ".join(f'"{table.name}"' for table in db.metadata.sorted_tables))
        conn.commit()


def plan(statement: Statement) -> list[str]:
    """The database's plan for ``statement``, one line per step (nothing is executed)."""
    with db.engine.connect() as conn:
        prefix = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        cursor = conn.connection.dbapi_connection.cursor()
        try:
            cursor.execute(prefix + statement.sql, statement.parameters)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        conn.rollback()
    return [str(row[-1]) for row in rows]


def full_scans(statement: Statement) -> list[str]:
    """Plan lines that read a growing table in full: a sequential scan, or a walk that never stops early.

    A walk in the order asked (``SCAN leads USING INDEX ix_leads_created_at``, SQLite's rowid
    order, or a PostgreSQL sequential scan when no order is asked) is fine when the statement
    stops after a page: a ``LIMIT`` and no sort step.
    """
    lines = plan(statement)
    bad = []
    # an ordered walk (an index, or SQLite's rowid) that stops after a page: no sort step, a LIMIT
    limited = bool(re.search(r"\bLIMIT\b", statement.sql, re.IGNORECASE)) and not any(
        _FULL_SORT.search(line) for line in lines)
    for line in lines:
        if (match := _PG_SEQ_SCAN.search(line)) and match[1] in GROWING and not limited:
            bad.append(line.strip())
        if (match := _SQLITE_SCAN.search(line)) and match[1] in GROWING and not limited:
            bad.append(line.strip())
    return bad


_INDEX_USED = re.compile(r"USING (?:COVERING )?INDEX (\w+)|Index (?:Only )?Scan (?:Backward )?using (\w+)"
                         r"|Bitmap Index Scan on (\w+)")


def indexes_used(seen: list[Statement]) -> set[str]:
    """Every index named in the plans of the captured statements."""
    return {name for s in explainable(seen) for line in plan(s)
            for match in _INDEX_USED.finditer(line) for name in match.groups() if name}


def explainable(seen: list[Statement]) -> list[Statement]:
    """The captured statements that read tables (not BEGIN, pragmas, lock calls or plain inserts)."""
    return [s for s in seen if s.sql.lstrip().upper().startswith(_EXPLAINABLE) and _READS.search(s.sql)]


def scans_in(seen: list[Statement]) -> dict[str, list[str]]:
    """Each captured statement that scans a growing table in full, with the offending plan lines."""
    return {s.sql: bad for s in explainable(seen) if (bad := full_scans(s))}
