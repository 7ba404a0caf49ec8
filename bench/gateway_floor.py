"""The floor under the gateway's CPU per request: a bare ASGI app under uvicorn, nothing else.

    python bench/gateway_floor.py --port 8123

uvicorn as the gateway runs it (httptools parser, uvloop when installed, no access log) with an
app that reads the request body and answers a fixed JSON object the size of a one-row prediction:
HTTP parsing, the ASGI cycle and the socket writes, no routing, JSON or logging. bench/gateway_cpu_ab.py
measures it beside the gateway (``--floor``) the same way, so the gateway's own share is the
difference.
"""

from __future__ import annotations

import argparse

import uvicorn

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, http="httptools"
    )


if __name__ == "__main__":
    main()
