"""How the gateway runs under uvicorn: connection timeouts that keep a busy gateway slow, never
failing, and that close connections which never finish their request.

- **Keep-alive longer than the callers'.** uvicorn closes an idle keep-alive connection after 5 s
  by default, and httpx's pool drops its idle connections after the same 5 s: a request sent on
  a connection the server is closing at that moment gets ``ReadError``/``RemoteProtocolError``
  (the server never saw it). The gateway keeps idle connections ``keep_alive_s`` (65 s, as load
  balancers do) so the caller's pool gives up first. (The dropped predictions seen under CPU load
  were the caller's own pool, not this: see docs/serving.md.)
- **A header deadline.** uvicorn waits forever for a request's headers: a connection that sends
  nothing, or half a header line, stays open. :class:`HeaderDeadline` closes it after
  ``header_timeout_s`` measured from the connection (or from the first byte of the next request
  on a kept-alive connection). A slow body is bounded by the app (``body_timeout_s``: 408).
"""

from __future__ import annotations

import asyncio
from typing import Any

from model_factory.serving.settings import GatewaySettings
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # uvicorn's faster parser when installed (uvicorn[standard]); h11 otherwise
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _FastProtocol
except ImportError:  # pragma: no cover - httptools is in the pinned set
    _FastProtocol = H11Protocol  # type: ignore[misc,assignment]


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


class HeaderDeadline(_HeaderDeadlineMixin, _OneWriteResponses, _FastProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's HTTP protocol with a deadline for request headers. The deadline is a class
    attribute (uvicorn instantiates the class per connection), set by :func:`uvicorn_options`
    (in a ``--workers`` process, by its app factory ``serving.__main__.worker_app``)."""


def uvicorn_options(settings: GatewaySettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` that every way of running the
    gateway uses (``python -m model_factory.serving``, the tests, the bench)."""
    HeaderDeadline.header_timeout_s = settings.header_timeout_s
    return {
        "timeout_keep_alive": settings.keep_alive_s,
        "http": HeaderDeadline,
        "backlog": 2048,
    }
