"""The floor under the gateway's CPU per request: HTTP servers that do nothing but answer.

    python bench/gateway_floor.py --port 8123 [--kind asgi|protocol|uvicorn-protocol]

Each reads a request's body and answers a fixed JSON object the size of a one-row prediction: HTTP
parsing and the socket writes, no routing, JSON or logging. bench/gateway_cpu_ab.py measures them
beside the gateway (``--floor``) the same way, so the gateway's own share is the difference.

- ``asgi``: a bare ASGI app under uvicorn as the gateway runs it (httptools parser, uvloop, no
  access log): the floor of anything served through uvicorn's ASGI cycle (scope, message dicts,
  a task and the receive/send coroutines per request).
- ``protocol``: an asyncio Protocol on uvloop parsing with httptools and answering from its
  parser callbacks: what uvicorn does minus the ASGI cycle, the floor of HTTP/1.1 in Python.
- ``uvicorn-protocol``: uvicorn's own httptools protocol with a POST answered from its parser
  callbacks (no cycle, no task), everything else through ASGI: the floor of a fast lane inside
  uvicorn's server (its connection handling, timeouts and default headers kept).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from email.utils import formatdate

import httptools
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

ANSWER = (
    b'{"model":"churn","version":"1","arm":"champion","request_id":"0123456789abcdef0123456789abcdef",'
    b'"prediction":0,"probabilities":{"0":0.912345,"1":0.087655}}'
)
HEAD = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())],
}


async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(HEAD)
    await send({"type": "http.response.body", "body": ANSWER})


class _Date:
    """The Date header, formatted once a second (as uvicorn's server does)."""

    def __init__(self) -> None:
        self.second, self.value = 0, b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second, self.value = now, formatdate(now, usegmt=True).encode()
        return self.value


DATE = _Date()


def _answer(head_only: bool = False) -> bytes:
    return b"".join(
        [
            b"HTTP/1.1 200 OK\r\ndate: ",
            DATE.header(),
            b"\r\nserver: uvicorn\r\ncontent-type: application/json\r\ncontent-length: ",
            str(len(ANSWER)).encode(),
            b"\r\n\r\n",
            b"" if head_only else ANSWER,
        ]
    )


class BareProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive from httptools' callbacks: headers kept, body gathered, answered."""

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", [], []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        b"".join(self.body)
        self.transport.write(_answer())
        if not self.parser.should_keep_alive():
            self.transport.close()


class LaneProtocol(HttpToolsProtocol):
    """uvicorn's protocol with POSTs answered from the parser callbacks."""

    lane = False

    def on_headers_complete(self) -> None:
        self.lane = self.parser.get_method() == b"POST"
        if not self.lane:
            super().on_headers_complete()
            return
        self.body = []
        self.path = httptools.parse_url(self.url).path

    def on_body(self, body: bytes) -> None:
        if self.lane:
            self.body.append(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self.lane:
            super().on_message_complete()
            return
        b"".join(self.body)
        head = [b"HTTP/1.1 200 OK\r\n"]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\ncontent-length: ", b"%d\r\n\r\n" % len(ANSWER)]
        self.transport.write(b"".join(head) + ANSWER)
        self.server_state.total_requests += 1


async def _serve_bare(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(BareProtocol, "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=["asgi", "protocol", "uvicorn-protocol"], default="asgi")
    args = parser.parse_args()
    if args.kind == "protocol":
        uvloop.run(_serve_bare(args.port))
        return
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        http=LaneProtocol if args.kind == "uvicorn-protocol" else "httptools",
    )


if __name__ == "__main__":
    main()
