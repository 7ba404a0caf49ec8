"""Writing the prediction log's rows cheaply, with the same text and values as before.

The gateway logs a row per prediction: its JSON texts and its insert are per-request costs.
:func:`one_shot` makes ``json.JSONEncoder.encode`` without building an encoder per call;
:class:`RowInsert` inserts rows given as tuples.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def one_shot(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, with the C encoder it builds per call built once: the same text. Its
    check for circular references is left out: what is encoded here comes from parsed JSON or is
    built by the gateway, never cyclic (one would raise RecursionError, not ValueError)."""
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # None without CPython's _json
    if c_make_encoder is None or encoder.indent is not None:
        return encoder.encode
    chunks = c_make_encoder(
        None,
        encoder.default,
        json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    join = "".join

    def encode(value: Any) -> str:
        return join(chunks(value, 0))

    return encode


def row_columns(table: sa.Table) -> tuple[str, ...]:
    """The columns a logged row gives values for, in table order: all but the autoincremented id."""
    return tuple(column.name for column in table.columns if column is not table.autoincrement_column)


class RowInsert:
    """How the writer inserts a batch of rows (tuples in ``columns`` order). SQLite: the
    statement compiled once and the driver's ``executemany`` on the tuples, each value through
    the dialect's own bind processor (DATETIME as SQLAlchemy writes it): SQLAlchemy's parameter
    handling per row cost the writer more than SQLite's insert. A server database: SQLAlchemy's
    insert of dicts, which sends a batch as multi-row statements instead of a round trip a row."""

    def __init__(self, engine: Engine, table: sa.Table, columns: tuple[str, ...]) -> None:
        self.table, self.columns = table, columns
        self.sql: str | None = None
        self.processors: list[tuple[int, Callable[[Any], Any]]] = []
        dialect = engine.dialect
        if dialect.name != "sqlite":
            return
        compiled = table.insert().compile(dialect=dialect, column_keys=list(columns))
        if not compiled.positional or list(compiled.positiontup or ()) != list(columns):
            return  # not the shape this relies on: SQLAlchemy's insert
        self.sql = compiled.string
        for i, name in enumerate(columns):
            process = table.c[name].type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                self.processors.append((i, process))

    def __call__(self, conn: sa.Connection, rows: list[tuple]) -> None:
        columns = self.columns
        if self.sql is None:
            conn.execute(self.table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
            return
        processors = self.processors
        if processors:
            prepared = []
            for row in rows:
                values = list(row)
                for i, process in processors:
                    values[i] = process(values[i])
                prepared.append(tuple(values))
            rows = prepared
        conn.exec_driver_sql(self.sql, rows)  # type: ignore[arg-type]
