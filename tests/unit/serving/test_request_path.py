"""The single-row request path's shortcuts decide exactly what the long way decides.

- the signature check's one-pass common case (``LoadedVersion._plainly_fits``) against the full
  check, for every kind of field and awkward values;
- a response's head and body leave in one transport write (``server._HeadWithBody``), a 100
  Continue passes straight through, and a head whose body never comes is still sent on close;
- the prediction log's writer is not woken per row, yet flush() and close() write everything;
- the log row's keyed hash is HMAC-SHA256, and request ids (the millisecond, then random bits
  drawn in blocks) are unique and time-ordered (a forked child never hands out its parent's);
- JSON from an encoder made once is the encoder's text; rows inserted as tuples are stored as
  SQLAlchemy stores them as dicts; the gateway's row tuples follow the table's columns;
- the lane's response heads, kept per shape, are the heads made afresh, and change with the Date.
"""

from __future__ import annotations

import hmac
import json
import math
import os
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from model_factory.serving import predlog
from model_factory.serving.gateway import _LogRows
from model_factory.serving.ids import KeyedHash, RequestIds
from model_factory.serving.logwrite import RowInsert, one_shot, row_columns
from model_factory.serving.models import InputField
from model_factory.serving.server import _Heads, _HeadWithBody
from starlette.responses import Response

from tests.unit.serving.test_predlog import row as log_row
from tests.unit.serving.versions import loaded_version

FIELDS = (
    InputField("x", "double"),
    InputField("n", "long"),
    InputField("s", "string"),
    InputField("b", "boolean"),
)
VALUES = [None, 0, 1, -7, 2**2000, 1.5, 3.0, math.nan, math.inf, True, False, "1", "", [1], {"a": 1}]


class _NotPlainDict(dict):
    """A dict the shortcut does not take: check() goes the long way."""


@pytest.mark.parametrize("field", [f.name for f in FIELDS])
def test_the_one_pass_signature_check_agrees_with_the_full_check(field: str) -> None:
    version = loaded_version(inputs=FIELDS)
    base = {"x": 1.0, "n": 2, "s": "a", "b": True}
    for value in VALUES:
        instance = {**base, field: value}
        assert version.check(instance) == version.check(_NotPlainDict(instance)), (field, value)
    assert version.check(base) == {}
    wrong_fields = ({"x": 1.0, "n": 2, "s": "a"}, {**base, "extra": 1}, {"x": 1.0, "n": 2, "s": "a", "c": 1})
    for instance in wrong_fields:
        assert version.check(instance) == version.check(_NotPlainDict(instance)) != {}


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_response_head_and_body_leave_in_one_write() -> None:
    transport, cycle = _Transport(), SimpleNamespace(response_started=False)
    wrapped = _HeadWithBody(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response starts: straight through
    cycle.response_started = True
    wrapped.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    wrapped.write(b"{}")
    wrapped.write(b"more")  # a streamed body's later chunks go as they come
    assert transport.writes[1:] == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}", b"more"]
    assert not wrapped.is_closing()


def test_a_head_whose_body_never_comes_is_sent_on_close() -> None:
    transport, cycle = _Transport(), SimpleNamespace(response_started=True)
    wrapped = _HeadWithBody(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")
    wrapped.close()
    assert transport.writes == [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"] and transport.closed


def test_the_log_writer_is_not_woken_per_row_and_flush_writes_everything(tmp_path) -> None:
    plog = predlog.PredictionLog(f"sqlite:///{tmp_path / 'p.db'}", batch_size=3, flush_interval_s=60)
    plog.start()
    try:
        for i in range(7):
            plog.log([log_row(i)])
        assert not plog._wake.is_set()  # logging only appends
        assert plog.flush(timeout_s=60)  # flush wakes it: all 7 written, in batches of 3
        assert plog.written == 7 and plog.backlog == 0
        assert plog.known_request("r6")
    finally:
        plog.close()


@pytest.mark.parametrize("key", [b"", b"salt", b"k" * 64, b"k" * 65, bytes(range(256))])
def test_the_keyed_hash_is_hmac_sha256(key: bytes) -> None:
    keyed = KeyedHash(key)
    for text in ("", "abc", '{"age": 41, "plan": "basic"}', "é" * 500, "x" * 5000):
        assert keyed.hex(text) == hmac.digest(key, text.encode(), "sha256").hex()


def test_request_ids_are_unique_time_ordered_hex_and_a_forked_child_draws_its_own() -> None:
    ids = RequestIds()
    before = time.time_ns() // 1_000_000
    drawn = [ids.next() for _ in range(3000)]  # several blocks of random bytes
    assert len(set(drawn)) == len(drawn)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in drawn)
    stamps = [int(i[:12], 16) for i in drawn]  # the millisecond each was made, in order
    assert stamps == sorted(stamps) and before <= stamps[0] <= stamps[-1] <= time.time_ns() // 1_000_000
    assert len({i[12:] for i in drawn}) == len(drawn)  # the random part alone is unique too
    ids.next()  # the parent holds an unfinished block
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, "".join(ids.next() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    ours = "".join(ids.next() for _ in range(10))
    assert len(theirs) == len(ours) == 320
    assert {theirs[k + 12 : k + 32] for k in range(0, 320, 32)}.isdisjoint(
        ours[k + 12 : k + 32] for k in range(0, 320, 32)
    )


_ENCODED = [
    {"b": 1, "a": [1.5, None, True, "é", {"z": 0.1, "y": -0.0}]},
    {"label": 1, "score": 0.7312345678901234, "probabilities": {"0": 0.268765, "1": 0.731235}},
    "plain \u2028 text \ud83d\ude00",
    [],
    3,
    {2: "int keys", 1: 1e300},
    {"when": predlog.utcnow()},  # default=str for the log; a TypeError for the answers
    {"1": 1, 2: 2},  # keys that do not sort: a TypeError with sort_keys
    math.nan,  # allow_nan=False: ValueError
    {"x": -math.inf},
]


def _outcome(encode, value) -> tuple:
    try:
        return ("text", encode(value))
    except (TypeError, ValueError) as exc:
        return ("error", type(exc))


@pytest.mark.parametrize(
    "encoder",
    [
        json.JSONEncoder(default=str, sort_keys=True, allow_nan=False),  # the log's
        json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")),  # the answers'
    ],
)
def test_the_encoder_made_once_writes_what_the_encoder_writes(encoder: json.JSONEncoder) -> None:
    encode = one_shot(encoder)
    outcomes = [_outcome(encode, value) for value in _ENCODED]
    assert outcomes == [_outcome(encoder.encode, value) for value in _ENCODED]
    assert ("error", ValueError) in outcomes and ("text", "3") in outcomes


def test_rows_as_tuples_are_stored_as_sqlalchemy_stores_dicts(tmp_path) -> None:
    """RowInsert (the driver's executemany on tuples, SQLite) stores the very values SQLAlchemy's
    insert of the same rows as dicts does: the DATETIME text, floats, nulls."""
    every = {"client_request_id": None}  # SQLAlchemy takes the columns of a batch from its first row
    rows = [
        {**log_row(1), **every, "created_at": datetime(2026, 12, 4, 18, 0, 0, 0), "latency_ms": 2},
        {**log_row(2), "created_at": predlog.utcnow(), "client_request_id": "mine", "score": None},
        {**log_row(3, "error"), **every, "error": "ValueError: é", "prediction": None, "inputs": '{"a": 1}'},
    ]
    stored = []
    for name, tuples in (("dicts", False), ("tuples", True)):
        engine = sa.create_engine(f"sqlite:///{tmp_path / name}.db")
        predlog.METADATA.create_all(engine)
        columns = row_columns(predlog.PREDICTIONS)
        with engine.begin() as conn:
            if tuples:
                insert = RowInsert(engine, predlog.PREDICTIONS, columns)
                assert insert.sql is not None  # the executemany path, not SQLAlchemy's insert
                insert(conn, [tuple(r.get(c) for c in columns) for r in rows])
            else:
                conn.execute(predlog.PREDICTIONS.insert(), rows)
        with engine.connect() as conn:
            stored.append(conn.exec_driver_sql("SELECT *, typeof(latency_ms) FROM predictions").all())
        engine.dispose()
    assert stored[0] == stored[1] and len(stored[0]) == 3
    assert stored[0][0][13] == "2026-12-04 18:00:00.000000"


def test_a_row_naming_no_column_is_refused_when_logged(tmp_path) -> None:
    plog = predlog.PredictionLog(f"sqlite:///{tmp_path / 'p.db'}")
    with pytest.raises(ValueError, match="no column"):
        plog.log([{**log_row(1), "nope": 1}])
    assert plog.backlog == 0


def test_the_gateway_builds_log_rows_in_the_tables_order() -> None:
    assert _LogRows.COLUMNS == predlog.SERVED_COLUMNS == row_columns(predlog.PREDICTIONS)


def test_utcnow_is_naive_utc_now() -> None:
    before = datetime.now(UTC).replace(tzinfo=None)
    now = predlog.utcnow()
    assert now.tzinfo is None and before <= now <= datetime.now(UTC).replace(tzinfo=None)


def test_a_lane_head_is_made_once_per_shape_and_again_when_the_date_changes() -> None:
    heads = _Heads()
    answer = Response(b'{"a":1}', media_type="application/json")
    closing = Response(b"x", 408, headers={"Connection": "close"})
    first = [(b"date", b"Fri, 04 Dec 2026 18:00:00 GMT"), (b"server", b"uvicorn")]
    head, keep = heads.head(first, answer, True)
    assert keep and head == (
        b"HTTP/1.1 200 OK\r\ndate: Fri, 04 Dec 2026 18:00:00 GMT\r\nserver: uvicorn\r\n"
        b"content-length: 7\r\ncontent-type: application/json\r\n\r\n"
    )
    assert heads.head(first, answer, True)[0] is head  # kept
    assert heads.head(first, answer, False) == (head[:-2] + b"connection: close\r\n\r\n", False)
    assert heads.head(first, closing, True)[1] is False  # the response says close
    second = [(b"date", b"Fri, 04 Dec 2026 18:00:01 GMT"), (b"server", b"uvicorn")]
    assert heads.head(second, answer, True)[0] == head.replace(b"18:00:00", b"18:00:01")
