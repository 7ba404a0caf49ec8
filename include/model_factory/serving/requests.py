"""The gateway's request rules, defined once: the body as JSON, identifiers, predict and feedback
bodies. Every protocol's router parses through these; a refusal is a :class:`GatewayError` that
each router renders in its protocol's own error format.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any

from model_factory.serving.settings import ENV
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect, Request

REQUEST_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
REQUEST_ID = re.compile(REQUEST_ID_PATTERN)
MAX_IDENTIFIER = 256
PREDICT_FIELDS = ("request_id", "entity_id", "features", "instances")
_PREDICT_FIELD_SET = frozenset(PREDICT_FIELDS)
FEEDBACK_FIELDS = ("request_id", "outcome")

Scalar = str | int | float | bool | None


class GatewayError(Exception):
    """A request the gateway refuses: HTTP ``status``, a ``detail`` (text or an object naming the
    field) and optional headers (``Retry-After``, ``WWW-Authenticate``)."""

    def __init__(self, status: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail if isinstance(detail, str) else json.dumps(detail, default=str))
        self.status, self.detail, self.headers = status, detail, headers

    @property
    def message(self) -> str:
        """One line of text for protocols whose errors are a string."""
        if isinstance(self.detail, dict):
            parts = [str(self.detail.get("error", ""))]
            parts += [f"{k}: {json.dumps(v, default=str)}" for k, v in self.detail.items() if k != "error"]
            return "; ".join(p for p in parts if p)
        return str(self.detail)


class PredictRequest(BaseModel):
    """One prediction (``features``) or a batch (``instances``); the feature names and types are
    the model's signature (GET /v1/models/{model}). ``null`` means missing. Documentation only:
    the handler parses the body itself with :func:`parse_predict` (clear 4xx, size limit)."""

    model_config = ConfigDict(extra="forbid")
    request_id: str | None = Field(
        None, pattern=REQUEST_ID_PATTERN, description="the caller's own id, echoed as client_request_id"
    )
    entity_id: str | None = Field(None, max_length=MAX_IDENTIFIER, description="sticky routing key")
    features: dict[str, Scalar] | None = None
    instances: list[dict[str, Scalar]] | None = Field(None, min_length=1)


class FeedbackRequest(BaseModel):
    """The true outcome of a served prediction: a class of the model (classification) or a
    finite number (regression). Recorded once per request id. Documentation only (see
    :func:`parse_feedback`)."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(pattern=REQUEST_ID_PATTERN, description="the request_id the gateway answered")
    outcome: str | int | float | bool


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _nan_is_null(name: str) -> Any:
    """MLflow's clients write a missing value as ``NaN`` (pandas' JSON): read it as null."""
    if name == "NaN":
        return None
    return _reject_constant(name)


# Made once: json.loads builds a decoder (and its scanner) per call when given parse_constant.
_DECODERS = {
    False: json.JSONDecoder(parse_constant=_reject_constant),
    True: json.JSONDecoder(parse_constant=_nan_is_null),
}


def _loads(body: bytes, nan_is_null: bool) -> Any:
    """``json.loads(body, parse_constant=...)`` with a decoder made once: the same decoding steps
    (the encoding detected from the bytes, a UTF-8 byte order mark refused). A body opening with
    ``{`` then a non-zero byte is UTF-8 to ``json.detect_encoding`` (no byte order mark, not
    UTF-16/32): the common case skips asking it."""
    if body[:1] == b"{" and body[1:2] != b"\0":
        return _DECODERS[nan_is_null].decode(body.decode("utf-8", "surrogatepass"))
    text = body.decode(json.detect_encoding(body), "surrogatepass")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODERS[nan_is_null].decode(text)


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The raw body, refused early (413) when larger than ``limit`` bytes, and (408) when it has
    not all arrived ``timeout_s`` after the headers: a slow sender cannot hold a connection.
    Read from the ASGI messages directly (Starlette's ``request.stream()`` is an async generator
    per request); a disconnect mid-body raises ClientDisconnect as it does."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise GatewayError(413, _too_large(limit))
    size, chunks, receive = 0, [], request.receive
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise GatewayError(413, _too_large(limit))
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise body_too_slow(timeout_s) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def body_too_slow(timeout_s: float) -> GatewayError:
    """The 408 for a body not all received ``timeout_s`` after the headers (the connection closes)."""
    return GatewayError(
        408,
        f"request body not received within {timeout_s:g} s ({ENV['body_timeout_s']})",
        headers={"Connection": "close"},
    )


def _too_large(limit: int) -> str:
    return f"request body is larger than the {limit} byte limit ({ENV['max_body_bytes']})"


def parse_json(body: bytes, nan_is_null: bool = False) -> Any:
    """``body`` as JSON: NaN/Infinity, lone surrogates and absurd nesting are a 400 naming why
    (``nan_is_null``: NaN means missing, as MLflow's scoring protocol has it)."""
    if not body or body.isspace():  # body.strip() empty, without the copy
        raise GatewayError(400, "empty request body: send a JSON object")
    try:
        parsed = _loads(body, nan_is_null)
    except json.JSONDecodeError as exc:
        raise GatewayError(
            400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise GatewayError(400, f"malformed JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise GatewayError(400, "malformed JSON: nested too deeply") from None
    if body.isascii() and b"\x00" not in body and b"\\u" not in body:
        return parsed  # ASCII UTF-8 without \u escapes holds no surrogate: skip encoding it again
    try:  # a lone surrogate ("\ud800") is valid JSON but no text: it cannot be logged or hashed
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise GatewayError(
            400, "malformed JSON: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)"
        ) from None
    except RecursionError:
        raise GatewayError(400, "malformed JSON: nested too deeply") from None
    return parsed


async def json_object(request: Request, limit: int, timeout_s: float, nan_is_null: bool = False) -> dict:
    """The body as a JSON object (anything else is a 422 naming what came)."""
    return json_object_of(await read_body(request, limit, timeout_s), nan_is_null)


def json_object_of(raw: bytes, nan_is_null: bool = False) -> dict:
    """A body already read, as a JSON object (anything else is a 422 naming what came)."""
    body = parse_json(raw, nan_is_null)
    if not isinstance(body, dict):
        raise GatewayError(422, {"error": f"the body must be a JSON object, got {type(body).__name__}"})
    return body


def identifier(body: dict, name: str, required: bool = False) -> str | None:
    """A string id field (``request_id``, ``entity_id``): numbers are taken as their text."""
    value = body.get(name)
    if value is None:
        if required:
            raise GatewayError(422, {"error": f"{name} is required", "field": name})
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise GatewayError(422, {"error": f"{name} must be a string", "field": name})
    value = str(value)
    if name == "request_id" and not REQUEST_ID.match(value):
        raise GatewayError(
            422, {"error": "request_id must be 1-128 characters of letters, digits, . _ : -", "field": name}
        )
    if len(value) > MAX_IDENTIFIER:
        raise GatewayError(
            422, {"error": f"{name} is longer than {MAX_IDENTIFIER} characters", "field": name}
        )
    return value


@dataclass(frozen=True)
class PredictCall:
    """A checked predict request: rows of features, the caller's ids, one row or a batch."""

    instances: list[Any]
    single: bool
    client_request_id: str | None = None
    entity_id: str | None = None


def parse_predict(body: dict, max_instances: int) -> PredictCall:
    """The gateway's own predict body: exactly one of ``features``/``instances``, known fields."""
    client_request_id = identifier(body, "request_id")
    entity_id = identifier(body, "entity_id")
    extra = [] if _PREDICT_FIELD_SET.issuperset(body) else sorted(set(body) - _PREDICT_FIELD_SET)
    if extra:
        raise GatewayError(
            422, {"error": "unknown top-level fields", "extra": extra[:20], "allowed": list(PREDICT_FIELDS)}
        )
    if ("features" in body) == ("instances" in body):
        raise GatewayError(
            422, {"error": "send exactly one of 'features' (an object) or 'instances' (a list of objects)"}
        )
    single = "features" in body
    instances = [body["features"]] if single else body["instances"]
    return checked_call(instances, single, max_instances, client_request_id, entity_id)


def checked_call(
    instances: Any,
    single: bool,
    max_instances: int,
    client_request_id: str | None = None,
    entity_id: str | None = None,
) -> PredictCall:
    """Rows as every protocol hands them over: a non-empty list within the batch limit."""
    if not isinstance(instances, list) or not instances:
        raise GatewayError(422, {"error": "'instances' must be a non-empty list of objects"})
    if len(instances) > max_instances:
        raise GatewayError(
            413, f"{len(instances)} instances; the limit is {max_instances} ({ENV['max_instances']})"
        )
    return PredictCall(instances, single, client_request_id, entity_id)


@dataclass(frozen=True)
class FeedbackCall:
    request_id: str
    outcome: str | int | float | bool


def parse_feedback(body: dict) -> FeedbackCall:
    request_id = identifier(body, "request_id", required=True)
    assert request_id is not None
    if "outcome" not in body:
        raise GatewayError(422, {"error": "outcome is required", "field": "outcome"})
    outcome = body["outcome"]
    if not isinstance(outcome, str | int | float | bool):
        raise GatewayError(422, {"error": "outcome must be a number, string or boolean", "field": "outcome"})
    extra = sorted(set(body) - set(FEEDBACK_FIELDS))
    if extra:
        raise GatewayError(422, {"error": "unknown fields", "extra": extra[:20]})
    return FeedbackCall(request_id, outcome)
