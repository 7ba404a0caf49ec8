"""What the Analyzer keeps about a person: bounded details, and pseudonyms instead of names.

Always: an event's ``details`` are stored as JSON of at most ``MAX_DETAILS_CHARS`` characters,
every string in them at most ``MAX_VALUE_CHARS`` (lists at most ``MAX_ITEMS`` items); a message
at most ``MAX_MESSAGE_CHARS``. A 100 KB ``--reason`` costs 500 characters, not 100 KB.

With ``FACTORY_ANALYZER_PSEUDONYMIZE=true`` (see ``store``) every field that names or quotes a
person is pseudonymised or dropped before it reaches the database:

- the user column, and any name in ``details`` (``actor``, ``user``, ``by``, ``reviewer``,
  ``author``, ``triggering_user``; "ana via cli" keeps its " via cli"): ``u-<12 hex>``;
- the command line (``details.argv``): the value of a name option (``--actor``) becomes its
  pseudonym, the value of a free-text option (``--reason``, ``--comment``, ``--note``,
  ``--message``) is dropped, a path keeps its file name only (a home folder names its owner);
- free text a person wrote (``details`` keys ``reason``/``comment``/``note``; the message of an
  event from a reviewer's or operator's decision: sources ``registry`` and ``decisions``): dropped;
- every other message (what the factory said): each name and free text above that it quotes is
  replaced by the pseudonym or by ``<dropped>``, and ``/home/<name>/`` by ``/home/<pseudonym>/``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

MAX_VALUE_CHARS = 500
MAX_ITEMS = 50
MAX_DETAILS_CHARS = 4_000
MAX_MESSAGE_CHARS = 4_000
DROPPED = "<dropped>"

NAME_KEYS = frozenset({"actor", "user", "by", "reviewer", "author", "triggering_user"})
FREE_TEXT_KEYS = frozenset({"reason", "comment", "note", "message"})
NAME_OPTIONS = frozenset({"--actor", "--by", "--reviewer", "--user"})
FREE_TEXT_OPTIONS = frozenset({"--reason", "--comment", "--note", "--message", "-m"})
PERSONAL_TEXT_SOURCES = frozenset({"registry", "decisions"})
"""Sources whose messages are a person's words (a review's or an ops action's reason)."""

_HOME = re.compile(r"(/home/|/Users/)([^/\s]+)")


def pseudonym(user: str, salt: str) -> str:
    """A stable pseudonym for ``user``; without the salt it cannot be turned back."""
    if user.startswith("u-") and len(user) == 14:
        return user  # already one
    return "u-" + hmac.new(salt.encode(), user.encode(), hashlib.sha256).hexdigest()[:12]


def _bounded(value: Any) -> Any:
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[:MAX_VALUE_CHARS] + "…"
    if isinstance(value, dict):
        return {str(k)[:100]: _bounded(v) for k, v in list(value.items())[:MAX_ITEMS]}
    if isinstance(value, (list, tuple)):
        return [_bounded(v) for v in list(value)[:MAX_ITEMS]]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _bounded(str(value))


def details_json(details: dict[str, Any]) -> str | None:
    """``details`` as JSON of at most MAX_DETAILS_CHARS: long values cut, then the largest keys
    dropped (named under ``truncated``) until it fits."""
    if not details:
        return None
    kept = _bounded(details)
    text = json.dumps(kept, default=str, sort_keys=True)
    dropped: list[str] = []
    while len(text) > MAX_DETAILS_CHARS and kept:
        largest = max(kept, key=lambda key: len(json.dumps(kept[key], default=str)))
        dropped.append(largest)
        del kept[largest]
        text = json.dumps({**kept, "truncated": dropped}, default=str, sort_keys=True)
    return text


def bounded_message(message: str | None) -> str | None:
    return (message or None) and message[:MAX_MESSAGE_CHARS]


class Pseudonymiser:
    """Replaces names by pseudonyms and drops free text, for one event at a time."""

    def __init__(self, salt: str):
        self.salt = salt

    def name(self, user: str) -> str:
        user = (user or "unknown").strip() or "unknown"
        person, via, rest = user.partition(" via ")
        return pseudonym(person, self.salt) + (via + rest if via else "")

    def argv(self, argv: Sequence[Any], quoted: dict[str, str]) -> list[str]:
        out: list[str] = []
        pending: str | None = None
        for arg in map(str, argv):
            option, eq, value = arg.partition("=")
            if pending is not None:
                out.append(self._option_value(pending, arg, quoted))
                pending = None
            elif arg.startswith("-") and eq:
                out.append(f"{option}={self._option_value(option, value, quoted)}")
            elif arg in NAME_OPTIONS or arg in FREE_TEXT_OPTIONS:
                out.append(arg)
                pending = arg
            elif "/" in arg:
                out.append(PurePosixPath(arg).name)
            else:
                out.append(arg)
        return out

    def _option_value(self, option: str, value: str, quoted: dict[str, str]) -> str:
        if option in NAME_OPTIONS:
            quoted[value] = self.name(value)
            return quoted[value]
        if option in FREE_TEXT_OPTIONS:
            quoted[value] = DROPPED
            return DROPPED
        return PurePosixPath(value).name if "/" in value else value

    def details(self, details: dict[str, Any], quoted: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in details.items():
            if key == "argv" and isinstance(value, (list, tuple)):
                out[key] = self.argv(value, quoted)
            elif key in NAME_KEYS and isinstance(value, str):
                quoted[value.partition(" via ")[0]] = self.name(value.partition(" via ")[0])
                out[key] = self.name(value)
            elif key in FREE_TEXT_KEYS and value:
                if isinstance(value, str):
                    quoted[value] = DROPPED
                out[key] = DROPPED
            elif isinstance(value, str) and "/" in value and key in ("spec", "path"):
                out[key] = PurePosixPath(value).name
            else:
                out[key] = value
        return out

    def message(self, message: str | None, source: str, quoted: dict[str, str]) -> str | None:
        if not message:
            return None
        if source in PERSONAL_TEXT_SOURCES:
            return DROPPED
        for plain in sorted(quoted, key=len, reverse=True):
            if len(plain) >= 2:
                message = message.replace(plain, quoted[plain])
        home: Callable[[re.Match[str]], str] = lambda m: m.group(1) + self.name(m.group(2))  # noqa: E731
        return _HOME.sub(home, message)
