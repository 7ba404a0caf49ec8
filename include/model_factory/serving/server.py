"""How the gateway runs under uvicorn: connection timeouts that keep a busy gateway slow, never
failing, and that close connections which never finish their request.

- **Keep-alive longer than the callers'.** uvicorn closes an idle keep-alive connection after 5 s
  by default, and httpx's pool drops its idle connections after the same 5 s: a request sent on
  a connection the server is closing at that moment gets ``ReadError``/``RemoteProtocolError``
  (the server never saw it). The gateway keeps idle connections ``keep_alive_s`` (65 s, as load
  balancers do) so the caller's pool gives up first. (The dropped predictions seen under CPU load
  were the caller's own pool, not this: see docs/serving.md.)
- **A header deadline.** uvicorn waits forever for a request's headers: a connection that sends
  nothing, or half a header line, stays open. :class:`GatewayProtocol` closes it after
  ``header_timeout_s`` measured from the connection (or from the first byte of the next request
  on a kept-alive connection). A slow body is bounded by the app (``body_timeout_s``: 408).
- **A predict lane.** A single-row ``POST /v1/models/{model}/predict`` is answered from the parser's
  callbacks, without uvicorn's ASGI cycle (``serving/lane.py`` says which requests and why); the
  rest, and anything unusual about a request, goes through the app as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httptools
from model_factory.serving.lane import PREDICT_LANE, PredictLane
from model_factory.serving.settings import GatewaySettings
from starlette.responses import Response
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


class _HeaderDeadlineMixin:
    """Close a connection whose request headers are not complete ``header_timeout_s`` after it
    opened or after the first byte of its next request."""

    header_timeout_s: float = 15.0
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    _header_deadline: asyncio.TimerHandle | None  # set by _arm; read with getattr before that

    def _waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm(self) -> None:
        if getattr(self, "_header_deadline", None) is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        deadline = getattr(self, "_header_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self._waiting_for_headers():
            self._arm()  # the first bytes of a request: its headers are due by the deadline
        else:
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        self._disarm()  # idle again: uvicorn's keep-alive timer takes over until the next byte

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]


class _HeadWithBody:
    """The transport one response is written through. uvicorn writes the status line and headers,
    then the body, in two writes: two ``send()`` calls, and the caller woken for a head it cannot
    use yet. This holds the head back until the body's first write and sends both at once (a 100
    Continue, written before the response starts, passes straight through)."""

    __slots__ = ("_cycle", "_head", "_head_seen", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport, self._cycle = transport, cycle
        self._head: bytes | None = None
        self._head_seen = False

    def write(self, data: bytes) -> None:
        if self._head is not None:
            data, self._head = self._head + data, None
        elif not self._head_seen and self._cycle.response_started:
            self._head, self._head_seen = data, True
            return
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:  # the app failed after starting its response: as uvicorn would
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the transport's
        return getattr(self._transport, name)


class _OneWriteResponses:
    """uvicorn's httptools protocol with each response's head and body written together."""

    cycle: Any
    transport: asyncio.Transport

    def on_headers_complete(self) -> None:
        super().on_headers_complete()  # type: ignore[misc]  # creates the cycle; its task runs later
        if self.cycle is not None and self.cycle.transport is self.transport:
            self.cycle.transport = _HeadWithBody(self.transport, self.cycle)


_INTERNAL_ERROR = Response(b"Internal Server Error", 500)
_INTERNAL_ERROR.raw_headers = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"21"),
    (b"connection", b"close"),
]
"""What uvicorn answers when the app fails before its response starts (``send_500_response``)."""


class _Heads:
    """Response heads as uvicorn's cycle writes them (status line, its default headers, the
    response's, ``connection: close`` when the connection ends), kept per status, headers and
    keep-alive: the lane's answers repeat a few shapes (one per length of answer). uvicorn's
    default headers (the Date) change once a second; the heads are made again then."""

    MAX_KEPT = 256

    def __init__(self) -> None:
        self.defaults: list[tuple[bytes, bytes]] | None = None
        self.kept: dict[tuple, tuple[bytes, bool]] = {}

    def head(
        self, defaults: list[tuple[bytes, bytes]], response: Response, keep_alive: bool
    ) -> tuple[bytes, bool]:
        """(the head, whether the connection stays open)."""
        if defaults is not self.defaults:  # a new list each second: kept here, never reused
            self.defaults, self.kept = defaults, {}
        key = (response.status_code, keep_alive, *response.raw_headers)
        made = self.kept.get(key)
        if made is None:
            made = _head(defaults, response, keep_alive)
            if len(self.kept) < self.MAX_KEPT:
                self.kept[key] = made
        return made


def _head(defaults: list[tuple[bytes, bytes]], response: Response, keep_alive: bool) -> tuple[bytes, bool]:
    out = [STATUS_LINE[response.status_code]]
    for name, value in defaults:
        out += [name, b": ", value, b"\r\n"]
    close_said = False
    for name, value in response.raw_headers:
        if name == b"connection" and b"close" in [t.strip() for t in value.lower().split(b",")]:
            keep_alive, close_said = False, True
        out += [name, b": ", value, b"\r\n"]
    if not keep_alive and not close_said:
        out.append(b"connection: close\r\n")
    out.append(b"\r\n")
    return b"".join(out), keep_alive


_HEADS = _Heads()
"""One for the process: the protocol's callbacks run on the event loop."""


class _PredictLaneMixin:
    """uvicorn's httptools protocol answering the predict lane's requests (``serving/lane.py``)
    from its parser callbacks: no scope, cycle, task or ASGI messages. A request takes the lane
    when its headers are in and it is plain: POST, HTTP/1.1, one Content-Length within the body
    limit, no Expect or Transfer-Encoding, no ASGI response in flight on the connection (a
    pipelined request queues behind it there), writing not paused (a caller that does not read
    its answers meets uvicorn's flow control), and the lane takes its path, key and model. Its
    body is gathered here, bounded by the same 408 deadline the app applies (a timer, armed only
    when the body does not come with the headers); the answer is written in one write, with
    uvicorn's default headers, as its cycle writes a response. A batch is handed to the app once
    the body is in, as if uvicorn had started the cycle at the headers."""

    app_state: dict[str, Any]
    access_log: bool
    root_path: str
    limit_concurrency: int | None
    parser: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    cycle: Any
    headers: list[tuple[bytes, bytes]]
    url: bytes
    scope: Any
    server_state: Any
    logger: logging.Logger
    flow: Any

    _lane: PredictLane | None = None
    _lane_model: str | None = None  # the lane request whose body is being read
    _lane_body: list[bytes]
    _lane_keep_alive = True
    _lane_timer: asyncio.TimerHandle | None = None
    _lane_answered = False  # a lane answer went out and no byte has come since

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        super().connection_made(transport)  # type: ignore[misc]
        lane = self.app_state.get(PREDICT_LANE)
        if lane is not None and not self.access_log and not self.root_path and self.limit_concurrency is None:
            self._lane = lane  # an access log, a root path or a concurrency limit: all through ASGI

    def data_received(self, data: bytes) -> None:
        self._lane_answered = False
        super().data_received(data)  # type: ignore[misc]
        if self._lane_model is not None and self._lane_timer is None and self._lane is not None:
            self._lane_timer = self.loop.call_later(self._lane.body_timeout_s, self._lane_too_slow)

    def _waiting_for_headers(self) -> bool:
        return (
            self._lane_model is None and not self._lane_answered and super()._waiting_for_headers()  # type: ignore[misc]
        )

    def on_message_begin(self) -> None:
        super().on_message_begin()  # type: ignore[misc]
        self._lane_answered = False
        self._unset_keepalive_if_required()  # type: ignore[attr-defined]  # a lane answer armed it

    def on_headers_complete(self) -> None:
        model = self._lane_takes()
        if model is None:
            super().on_headers_complete()  # type: ignore[misc]
            return
        self._lane_model, self._lane_body = model, []
        self._lane_keep_alive = self.parser.should_keep_alive()

    def _lane_takes(self) -> str | None:
        """The model when this request takes the lane, else None (uvicorn's cycle, the app)."""
        lane = self._lane
        if lane is None or (self.cycle is not None and not self.cycle.response_complete):
            return None
        if self.flow.write_paused:  # the caller is not reading its answers: uvicorn's flow control
            return None
        parser = self.parser
        if parser.get_method() != b"POST" or parser.get_http_version() != "1.1" or parser.should_upgrade():
            return None
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None:
                    return None
                length = value
            elif name == b"transfer-encoding" or name == b"expect":
                return None
        if length is None or not length.isdigit() or int(length) > lane.max_body_bytes:
            return None
        path = httptools.parse_url(self.url).path
        if b"%" in path or not path.isascii():
            return None
        self.scope["method"], self.scope["path"] = "POST", path.decode("ascii")
        return lane.model_for(self.scope)

    def on_body(self, body: bytes) -> None:
        if self._lane_model is not None:
            self._lane_body.append(body)
        else:
            super().on_body(body)  # type: ignore[misc]

    def on_message_complete(self) -> None:
        model = self._lane_model
        if model is None:
            super().on_message_complete()  # type: ignore[misc]
            return
        self._lane_model = None
        if self._lane_timer is not None:
            self._lane_timer.cancel()
            self._lane_timer = None
        chunks, self._lane_body = self._lane_body, []
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        assert self._lane is not None
        try:
            response = self._lane.answer(model, body)
        except Exception as exc:  # as uvicorn answers an app that fails before responding
            self.logger.error("Exception in ASGI application\n", exc_info=exc)
            response = _INTERNAL_ERROR
        if response is not None:
            self._lane_write(response, self._lane_keep_alive)
            return
        # handed to the app: the cycle uvicorn would have started at the headers, the body in
        super().on_headers_complete()  # type: ignore[misc]
        if body:
            super().on_body(body)  # type: ignore[misc]
        super().on_message_complete()  # type: ignore[misc]

    def _lane_too_slow(self) -> None:
        self._lane_timer = None
        model = self._lane_model
        if model is None or self._lane is None or self.transport.is_closing():
            return
        self._lane_model, self._lane_body = None, []
        self._lane_write(self._lane.too_slow(model), keep_alive=False)

    def _lane_write(self, response: Response, keep_alive: bool) -> None:
        """The response as uvicorn's cycle writes it (status line, its default headers, the
        response's, ``connection: close`` when the connection ends), in one write."""
        head, keep_alive = _HEADS.head(self.server_state.default_headers, response, keep_alive)
        self.transport.write(head + bytes(response.body))
        if not keep_alive:
            self.transport.close()
        self._lane_answered = True
        self.on_response_complete()  # type: ignore[attr-defined]  # keep-alive timer, counters

    def shutdown(self) -> None:
        if self._lane_model is not None:  # a lane request is being read: answer it, then close
            self._lane_keep_alive = False
            return
        super().shutdown()  # type: ignore[misc]

    def connection_lost(self, exc: Exception | None) -> None:
        if self._lane_timer is not None:
            self._lane_timer.cancel()
            self._lane_timer = None
        self._lane_model = None
        super().connection_lost(exc)  # type: ignore[misc]


class GatewayProtocol(  # type: ignore[misc,valid-type]
    _PredictLaneMixin, _HeaderDeadlineMixin, _OneWriteResponses, HttpToolsProtocol
):
    """uvicorn's HTTP protocol with the predict lane and a deadline for request headers. The
    deadline is a class attribute (uvicorn instantiates the class per connection), set by
    :func:`uvicorn_options` (in a ``--workers`` process, by its app factory
    ``serving.__main__.worker_app``)."""


def uvicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that every way of running the
    gateway uses (``python -m model_factory.serving``, the tests, the bench)."""
    GatewayProtocol.header_timeout_s = settings.header_timeout_s
    return {
        "timeout_keep_alive": settings.keep_alive_s,
        "http": GatewayProtocol,
        "backlog": 2048,
    }
