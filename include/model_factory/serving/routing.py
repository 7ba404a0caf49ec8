"""Sticky routing: a caller's key hashes to a fixed point in [0, 1); below the share is canary.

The salt includes the canary version, so each new canary samples a fresh set of callers, while a
ramp (10% -> 50%) of the same canary only adds callers: nobody flips back to the champion.
"""

from __future__ import annotations

import hashlib

CHAMPION_ARM, CANARY_ARM, SHADOW_ARM = "champion", "canary", "shadow"


def bucket(key: str, salt: str) -> float:
    """Stable across processes and machines (never Python's salted ``hash``)."""
    digest = hashlib.blake2b(f"{salt}|{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def choose_arm(key: str, model: str, canary_version: str | None, share: float) -> str:
    if canary_version is None or share <= 0.0:
        return CHAMPION_ARM
    return CANARY_ARM if bucket(key, f"{model}|canary|{canary_version}") < share else CHAMPION_ARM


def shadow_sampled(key: str, model: str, shadow_version: str | None, share: float) -> bool:
    """Whether the shadow also scores this caller's request (sticky, like the canary's split, with
    its own salt: the shadow's sample does not follow the canary's)."""
    if shadow_version is None or share <= 0.0:
        return False
    return share >= 1.0 or bucket(key, f"{model}|shadow|{shadow_version}") < share
