"""Request ids and keyed hashes for the prediction log, made without leaving the GIL.

Both run once or twice per request on the event loop. ``uuid.uuid4()`` reads the kernel's random
source per call and ``hmac.digest`` runs OpenSSL's HMAC: each releases the GIL, and with the log
writer thread runnable the event loop then waits for the GIL to come back. Here the random bytes
are read 4 KiB at a time and the HMAC is computed from two SHA-256 states keyed once: the same
digests as ``hmac.digest(key, text, "sha256")``.

A request id is 32 hex digits: the millisecond it was made (12) then 80 random bits (20). Ids of
consecutive requests sort together, so the prediction log's ``request_id`` index grows at its end
instead of at a random page per row: with random ids each insert dirtied its own index page, and
the writer's CPU per row doubled on a log of a few hundred thousand rows (and kept growing with
it). 80 random bits keep an id unguessable: nobody can name another caller's prediction.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

_BLOCK = 64  # SHA-256's block size: the HMAC key is padded (or hashed) to it
_RANDOM_HEX = 20  # 80 random bits per id
_IDS_PER_READ = 256


class KeyedHash:
    """HMAC-SHA256 under one key, as hex: ``hmac.digest(key, text.encode(), "sha256").hex()``."""

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def hex(self, text: str) -> str:
        inner = self._inner.copy()
        inner.update(text.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class RequestIds:
    """32-hex-digit ids: milliseconds since the epoch (12 digits) and 80 random bits from
    ``os.urandom``, read in blocks; thread-safe. A forked child reads its own block (it never
    hands out the random parts left in its parent's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hex = ""
        self._at = 0
        self._pid = os.getpid()

    def next(self) -> str:
        with self._lock:
            at = self._at
            if at >= len(self._hex) or self._pid != os.getpid():
                self._hex, at, self._pid = os.urandom(_RANDOM_HEX // 2 * _IDS_PER_READ).hex(), 0, os.getpid()
            self._at = at + _RANDOM_HEX
            return f"{time.time_ns() // 1_000_000:012x}{self._hex[at : at + _RANDOM_HEX]}"
