"""The API key, checked once for every path except the probes.

With ``FACTORY_GATEWAY_API_KEY`` set, everything needs the key (``X-API-Key: <key>`` or
``Authorization: Bearer <key>``, the form Prometheus' scrape ``authorization`` sends):
predictions, feedback, model status, ``/health`` (it names models, versions and errors),
``/metrics``, ``/docs`` and ``/openapi.json`` (the API's shape). Public: the probes, which say
only up/ready: ``/health/live``, ``/health/ready`` and the protocols' own (``/ping``,
``/v2/health/live``, ``/v2/health/ready``).
"""

from __future__ import annotations

import hmac
import json

PUBLIC_PATHS = frozenset({"/health/live", "/health/ready", "/ping", "/v2/health/live", "/v2/health/ready"})
_REFUSAL = json.dumps({"detail": "missing or wrong X-API-Key header"}).encode()


class ApiKey:
    """The key, and whether a request may pass: a public path, or the key in its headers."""

    def __init__(self, key: str) -> None:
        self.key = key.encode()

    def allows(self, scope) -> bool:  # type: ignore[no-untyped-def]
        return scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or self._given(scope)

    def _given(self, scope) -> bool:  # type: ignore[no-untyped-def]
        given = b""
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                given = value
                break
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                given = value[7:].strip()
        return hmac.compare_digest(given, self.key)


class ApiKeyGuard:
    """Pure ASGI middleware (no per-request thread hop): 401 without the key."""

    def __init__(self, app, key: ApiKey) -> None:  # type: ignore[no-untyped-def]
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if self.key.allows(scope):
            await self.app(scope, receive, send)
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_REFUSAL)).encode()),
                    (b"www-authenticate", b"API-Key"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _REFUSAL})
