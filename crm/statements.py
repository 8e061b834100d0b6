"""Statements compiled once per database dialect and run on the driver's own cursor.

The busiest writes, the public intake and the audit append, run while the database's write
lock is held (one writer at a time on SQLite). SQLAlchemy spends some 30 µs per statement on
its cache key, execution context and result wrapping, several times what SQLite spends
running it. Here a statement is compiled once per dialect; a call converts its values with
the columns' own bind processors and runs it on a cursor of the session's connection, in
the session's transaction. Driver errors are raised as SQLAlchemy's (``OperationalError``,
``IntegrityError``…) and a lost connection is invalidated, as SQLAlchemy itself would.
Values come back as the driver returns them (SQLite booleans as 0/1). For fixed inserts and
lookups only; everything else uses the ORM.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Executable, Table, insert
from sqlalchemy.exc import DBAPIError

from .models import db


@dataclass(frozen=True)
class Compiled:
    """One statement's SQL for one dialect, and how to turn named values into driver parameters."""

    sql: str
    order: tuple[str, ...] | None  # positional drivers take values in this order
    binders: tuple[tuple[str, Callable[[Any], Any] | None], ...]  # parameter name, bind processor
    fallbacks: dict[str, Callable[[], Any]]  # parameters a call may omit: column defaults, bound literals

    @classmethod
    def of(cls, statement: Any, dialect: Any, column_keys: Sequence[str] | None = None) -> Compiled:
        """Compile ``statement``; an insert compiled for ``column_keys`` also fills the columns' defaults."""
        compiled = statement.compile(dialect=dialect, column_keys=column_keys)
        binders = tuple((name, bind.type.bind_processor(dialect)) for name, bind in compiled.binds.items())
        if column_keys is not None:
            fallbacks = {name: _column_default(statement.table.c[name]) for name, _ in binders
                         if name not in column_keys}
        else:
            fallbacks = {name: (lambda value=bind.value: value) for name, bind in compiled.binds.items()}
        order = tuple(compiled.positiontup) if compiled.positional else None
        return cls(str(compiled), order, binders, fallbacks)

    def parameters(self, values: dict[str, Any]) -> tuple | dict:
        """``values`` (plus fallbacks) converted as SQLAlchemy would, in the driver's parameter style."""
        converted = {}
        for name, process in self.binders:
            value = values[name] if name in values else self.fallbacks[name]()
            converted[name] = process(value) if process is not None and value is not None else value
        return tuple(converted[name] for name in self.order) if self.order is not None else converted


def _column_default(column: Any) -> Callable[[], Any]:
    """A producer of a column's Python-side insert default (a constant or a function such as ``utcnow``)."""
    default = column.default
    return (lambda: default.arg(None)) if default.is_callable else (lambda: default.arg)


_compiled: dict[tuple[str, Hashable], Compiled] = {}


def _compiled_for(dialect: Any, key: Hashable, compile_: Callable[[Any], Compiled]) -> Compiled:
    found = _compiled.get((dialect.name, key))
    if found is None:
        found = _compiled[(dialect.name, key)] = compile_(dialect)
    return found


def run(connection: Connection, sql: str, parameters: Any, many: bool = False) -> list[tuple]:
    """Run ``sql`` on a cursor of ``connection``, in its transaction, and return any rows."""
    return _run(connection, sql, parameters, many)


def _run(connection: Connection, sql: str, parameters: Any, many: bool = False) -> list[tuple]:
    driver = connection.connection.dbapi_connection
    cursor = driver.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
            return []
        cursor.execute(sql, parameters)
        return cursor.fetchall() if cursor.description else []
    except connection.dialect.loaded_dbapi.Error as error:
        raise _driver_error(connection, error, sql, parameters, many, cursor) from error
    finally:
        cursor.close()


def _driver_error(connection: Connection, error: Exception, sql: str, parameters: Any, many: bool = False,
                  cursor: Any = None) -> DBAPIError:
    """The driver's ``error`` as SQLAlchemy raises it; a lost connection is invalidated first."""
    lost = connection.dialect.is_disconnect(error, connection.connection.dbapi_connection, cursor)
    if lost:
        connection.invalidate(error)
    return DBAPIError.instance(sql, parameters, error, connection.dialect.loaded_dbapi.Error,
                               connection_invalidated=lost, dialect=connection.dialect, ismulti=many)


@contextmanager
def pipelined() -> Iterator[None]:
    """Send the inserts run inside one after another without waiting for each answer (PostgreSQL's
    pipeline mode: one round trip for them all); elsewhere they run as usual.

    The server still runs them in order, in the session's transaction; an error among them is
    raised, as SQLAlchemy's, when the block ends. Only for statements whose results are not read.
    """
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        yield
        return
    try:
        with connection.connection.dbapi_connection.pipeline():
            yield
    except connection.dialect.loaded_dbapi.Error as error:
        raise _driver_error(connection, error, "(pipelined inserts)", None) from error


def run_in_turn(connection: Connection, calls: Sequence[tuple[str, Any]]) -> list[list[tuple]]:
    """Run queries one after another in ``connection``'s transaction and return each one's rows.

    On PostgreSQL they travel in one pipeline, one round trip for them all; the server still
    finishes each (a lock it waits for included) before the next starts, and in READ COMMITTED
    each reads a snapshot taken when it starts. Queries that return rows only.
    """
    driver = connection.connection.dbapi_connection
    if connection.dialect.name != "postgresql" or (len(calls) < 2 and not driver.pgconn.pipeline_status):
        return [_run(connection, sql, parameters) for sql, parameters in calls]
    cursors = [driver.cursor() for _ in calls]
    try:
        with _pipeline_of(driver):
            for cursor, (sql, parameters) in zip(cursors, calls, strict=True):
                cursor.execute(sql, parameters)
            return [cursor.fetchall() for cursor in cursors]
    except connection.dialect.loaded_dbapi.Error as error:
        raise _driver_error(connection, error, "(pipelined queries)", None) from error
    finally:
        for cursor in cursors:
            cursor.close()


def _pipeline_of(driver: Any) -> AbstractContextManager[Any]:
    """A pipeline on ``driver``, or the one it is already in: a nested one would add a round trip to enter."""
    return nullcontext() if driver.pgconn.pipeline_status else driver.pipeline()


class Lookup:
    """A fixed query with named bind parameters, compiled on first use for each dialect."""

    def __init__(self, build: Callable[[], Executable]):
        self._build = build

    def rows(self, **values: Any) -> list[tuple]:
        """Every row the query returns for ``values``, in the session's transaction."""
        connection = db.session.connection()
        return run(connection, *self.call(connection, values))

    def call(self, connection: Connection, values: dict[str, Any]) -> tuple[str, Any]:
        """The SQL and driver parameters that run this query for ``values`` on ``connection``."""
        compiled = _compiled_for(connection.dialect, self, lambda dialect: Compiled.of(self._build(), dialect))
        return compiled.sql, compiled.parameters(values)

    def first(self, **values: Any) -> tuple | None:
        """The first row the query returns for ``values``, or ``None``."""
        rows = self.rows(**values)
        return rows[0] if rows else None


def rows_in_turn(*lookups: tuple[Lookup, dict[str, Any]]) -> list[list[tuple]]:
    """Each ``(lookup, values)``'s rows, run in turn in the session's transaction (see :func:`run_in_turn`)."""
    if not lookups:
        return []
    connection = db.session.connection()
    return run_in_turn(connection, [lookup.call(connection, values) for lookup, values in lookups])


def insert_rows(table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) in the session's transaction; column defaults fill the rest."""
    connection = db.session.connection()
    keys = tuple(rows[0])
    compiled = _compiled_for(connection.dialect, ("insert", table.name, keys),
                             lambda dialect: Compiled.of(insert(table), dialect, keys))
    parameters = [compiled.parameters(row) for row in rows]
    if len(parameters) == 1:
        run(connection, compiled.sql, parameters[0])
    else:
        run(connection, compiled.sql, parameters, many=True)


def snapshot_rows(stmt: Any, params: dict[str, Any]) -> list[tuple]:
    """Run a SELECT through the driver's cursor in a connection of its own.

    This skips SQLAlchemy's result processing (costlier than the MACs when verifying the
    audit chain) and, on SQLite, the ``BEGIN IMMEDIATE`` of every SQLAlchemy transaction: a
    single statement reads a consistent snapshot without taking the write lock.
    """
    with db.engine.connect() as conn:
        compiled = Compiled.of(stmt, conn.dialect)
        return run(conn, compiled.sql, compiled.parameters(params))
