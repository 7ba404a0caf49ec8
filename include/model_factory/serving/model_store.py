"""The versions a gateway process holds in memory: loaded on first use, within a memory budget.

A fleet of thousands of models cannot sit in every worker's memory, and most of it is idle. The
store loads a version when a request (or the registry watcher, for a model in use) first asks
for it, through the one safe loader; it evicts the least recently used versions when the
estimated resident size would pass the budget. Rules:

* concurrent first requests for one version load it once (a lock per version: single flight);
* a request holds a *lease* on the version it uses: a leased version is never evicted, so
  eviction never drops a request in flight, and its memory stays counted until it is released;
* versions no longer routed (an old champion) are evicted first, then the least recently used:
  the champion of a busy model is always recently used, so it stays;
* a version that cannot fit (bigger than the budget, or the budget held by leased versions)
  is refused with :class:`LoadRefusedError` saying why: the gateway answers 503 with that reason;
* a load that failed is remembered for ``retry_after_s``: requests in that window get the same
  reason at once instead of hammering the registry.

The resident size of a version is an estimate: :data:`SIZE_FACTOR` x its pickled estimator plus
:data:`VERSION_OVERHEAD_BYTES` (see ``docs/serving.md`` for how it compares with measured RSS).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from model_factory.serving.models import LoadedVersion, LoadError

log = logging.getLogger(__name__)

Key = tuple[str, str]
SIZE_FACTOR = 3.0
"""Resident bytes per pickled byte: the estimator's arrays, the fast path's copies of them,
Python object headers (measured in bench/gateway_fleet.py against the process RSS)."""
VERSION_OVERHEAD_BYTES = 256 * 1024
"""Fixed cost of one loaded version beyond its estimator: spec, signature, compiled tables."""
LOAD_TIMES_KEPT = 1000
"""Cold-load times kept for the p50/p99 in /health (the most recent ones)."""


FAILED, TOO_BIG, BUDGET_HELD, NO_ROOM = "failed", "too_big", "budget_held", "no_room"
"""Why a version was refused: its load failed; it is bigger than the whole budget; the budget is
held by leased versions; (warming only) it would need an eviction."""


class LoadRefusedError(Exception):
    """A version the store cannot serve now: ``reason`` says why (for a 503), ``cause`` is one
    of FAILED, TOO_BIG, BUDGET_HELD, NO_ROOM."""

    def __init__(
        self, model: str, version: str, arm: str, reason: str, retry_after_s: float, cause: str = FAILED
    ) -> None:
        super().__init__(reason)
        self.model, self.version, self.arm, self.reason = model, version, arm, reason
        self.retry_after_s, self.cause = retry_after_s, cause


@dataclass
class _Entry:
    loaded: LoadedVersion
    size: int
    last_used: float
    leases: int = 0
    routed: bool = True


@dataclass(frozen=True)
class StoreStats:
    budget_bytes: int
    resident_bytes: int
    loaded_versions: int
    leased_versions: int
    loads: int
    evictions: int
    refused: int
    cold_load_p50_ms: float | None
    cold_load_p99_ms: float | None

    def describe(self) -> dict:
        mib = 1024 * 1024
        return {
            "budget_mib": round(self.budget_bytes / mib, 1),
            "resident_mib": round(self.resident_bytes / mib, 2),
            "loaded_versions": self.loaded_versions,
            "leased_versions": self.leased_versions,
            "cold_loads": self.loads,
            "evictions": self.evictions,
            "refused": self.refused,
            "cold_load_p50_ms": self.cold_load_p50_ms,
            "cold_load_p99_ms": self.cold_load_p99_ms,
        }


def estimated_bytes(loaded: LoadedVersion) -> int:
    """The store's estimate of what ``loaded`` holds in memory."""
    return int(SIZE_FACTOR * loaded.pickled_bytes) + VERSION_OVERHEAD_BYTES


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (linear, numpy's default), None when empty."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


class ModelStore:
    def __init__(
        self,
        budget_bytes: int,
        loader: Callable[[str, str], LoadedVersion],
        *,
        size_of: Callable[[LoadedVersion], int] = estimated_bytes,
        on_load_failure: Callable[[str, str, str, str], None] | None = None,
        retry_after_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget_bytes = budget_bytes
        self.loader = loader
        self.size_of = size_of
        self.on_load_failure = on_load_failure
        self.retry_after_s = retry_after_s
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[Key, _Entry] = {}
        self._loading: dict[Key, threading.Lock] = {}
        self._failed: dict[Key, tuple[float, str]] = {}
        self._reported: set[tuple[str, ...]] = set()
        self._sizes: dict[Key, int] = {}  # sizes seen, kept after eviction: refuse too-big at once
        self._load_ms: list[float] = []
        self.loads = self.evictions = self.refused = 0

    # --- reading ---------------------------------------------------------------------------------

    def peek(self, model: str, version: str) -> LoadedVersion | None:
        """The version if it is resident now (no load, no change to its recency)."""
        entry = self._entries.get((model, str(version)))
        return entry.loaded if entry else None

    def resident(self) -> list[LoadedVersion]:
        return [entry.loaded for entry in list(self._entries.values())]

    def failure(self, model: str, version: str) -> str | None:
        """Why the last load of this version failed, while that is remembered."""
        failed = self._failed.get((model, str(version)))
        return failed[1] if failed else None

    def failures(self) -> dict[Key, str]:
        return {key: why for key, (_, why) in list(self._failed.items())}

    def stats(self) -> StoreStats:
        with self._lock:
            times = list(self._load_ms)
            return StoreStats(
                budget_bytes=self.budget_bytes,
                resident_bytes=sum(e.size for e in self._entries.values()),
                loaded_versions=len(self._entries),
                leased_versions=sum(1 for e in self._entries.values() if e.leases),
                loads=self.loads,
                evictions=self.evictions,
                refused=self.refused,
                cold_load_p50_ms=_round(percentile(times, 50)),
                cold_load_p99_ms=_round(percentile(times, 99)),
            )

    # --- using -----------------------------------------------------------------------------------

    def lease(self, model: str, version: str, arm: str) -> Lease:
        """The version, loaded if needed, held (never evicted) until the block ends."""
        return Lease(self, (model, str(version)), arm)

    def acquire(self, model: str, version: str, arm: str) -> LoadedVersion:
        """:meth:`lease` without the context manager: held until :meth:`release` is called."""
        return self._acquire((model, str(version)), arm, lease=True)

    def release(self, model: str, version: str, loaded: LoadedVersion) -> None:
        """The end of an :meth:`acquire` of ``loaded``."""
        self._release((model, str(version)), loaded)

    def _release(self, key: Key, loaded: LoadedVersion) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.loaded is loaded:
                entry.leases -= 1

    def get(
        self, model: str, version: str, arm: str, *, retry: bool = False, evict: bool = True
    ) -> LoadedVersion:
        """The version, loaded if needed (not held: for reading its signature, or warming).
        ``retry``: try a remembered failure again now (the watcher's refresh does); ``evict``
        False: load only if it fits beside what is resident (warming a small fleet)."""
        return self._acquire((model, str(version)), arm, lease=False, retry=retry, evict=evict)

    def retain(self, routed: set[Key]) -> None:
        """Mark what the routes still use; versions no longer routed and not leased are dropped."""
        with self._lock:
            for key, entry in list(self._entries.items()):
                entry.routed = key in routed
                if not entry.routed and not entry.leases:
                    del self._entries[key]
            for key in [key for key in self._failed if key not in routed]:
                del self._failed[key]

    # --- loading ---------------------------------------------------------------------------------

    def _acquire(
        self, key: Key, arm: str, *, lease: bool, retry: bool = False, evict: bool = True
    ) -> LoadedVersion:
        hit = self._hit(key, lease)
        if hit is not None:
            return hit
        with self._lock:
            single = self._loading.setdefault(key, threading.Lock())
        with single:  # one load per version; the others wait for it and then find it resident
            hit = self._hit(key, lease)
            if hit is not None:
                return hit
            self._refuse_known(key, arm, retry, evict)
            started = time.perf_counter()
            try:
                loaded = self.loader(*key)
            except LoadError as exc:
                self._load_failed(key, arm, str(exc))
                raise LoadRefusedError(
                    *key, arm, f"{key[0]} v{key[1]} cannot be loaded: {exc}", self.retry_after_s
                ) from exc
            elapsed_ms = (time.perf_counter() - started) * 1000.0
            return self._admit(key, arm, loaded, elapsed_ms, lease, evict)

    def _hit(self, key: Key, lease: bool) -> LoadedVersion | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            entry.last_used = self.clock()
            entry.leases += 1 if lease else 0
            return entry.loaded

    def _refuse_known(self, key: Key, arm: str, retry: bool, evict: bool) -> None:
        """Refuse at once what is known not to work: a version bigger than the budget, one whose
        load failed a moment ago, or (warming) one known not to fit beside what is resident."""
        size = self._sizes.get(key)
        if size is not None and size > self.budget_bytes:
            raise self._refusal(key, arm, self._too_big(key, size), 3600.0, TOO_BIG)
        if size is not None and not evict and self._used() + size > self.budget_bytes:
            raise LoadRefusedError(*key, arm, self._no_room(key, size), self.retry_after_s, NO_ROOM)
        failed = self._failed.get(key)
        if failed is not None and not retry and self.clock() - failed[0] < self.retry_after_s:
            raise self._refusal(
                key, arm, f"{key[0]} v{key[1]} cannot be loaded: {failed[1]}", self.retry_after_s, FAILED
            )

    def _used(self) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values())

    def _refusal(self, key: Key, arm: str, reason: str, retry_after_s: float, cause: str) -> LoadRefusedError:
        with self._lock:
            self.refused += 1
        return LoadRefusedError(*key, arm, reason, retry_after_s, cause)

    def _too_big(self, key: Key, size: int) -> str:
        return (
            f"{key[0]} v{key[1]} needs about {_mib(size)} MiB resident, more than the gateway's whole "
            f"memory budget of {_mib(self.budget_bytes)} MiB (FACTORY_GATEWAY_MEMORY_MB): it cannot be "
            "served by this gateway until the budget is raised"
        )

    def _no_room(self, key: Key, size: int) -> str:
        return f"{key[0]} v{key[1]} (about {_mib(size)} MiB) not warmed: it would need an eviction"

    def _load_failed(self, key: Key, arm: str, message: str) -> None:
        with self._lock:
            self._failed[key] = (self.clock(), message)
            self.refused += 1
        # A shadow's failure is reported on its own: it must not stand in for the report the
        # canary analysis needs if the same version is later made the canary.
        reported = (*key, arm) if arm == "shadow" else key
        if reported not in self._reported and self.on_load_failure is not None:
            self._reported.add(reported)
            try:
                self.on_load_failure(*key, arm, message)
            except Exception:
                log.exception("could not report the load failure of %s v%s", *key)
        log.error("cannot load %s %s: %s", arm, key, message)

    def _admit(
        self, key: Key, arm: str, loaded: LoadedVersion, elapsed_ms: float, lease: bool, evict: bool
    ) -> LoadedVersion:
        size = self.size_of(loaded)
        with self._lock:
            self._sizes[key] = size
            self._failed.pop(key, None)
            self._reported.discard(key)
            self._reported.discard((*key, "shadow"))
            refusal = self._room_for(key, arm, size, evict)
            if refusal is None:
                self._entries[key] = _Entry(loaded, size, self.clock(), 1 if lease else 0)
                self.loads += 1
                self._load_ms.append(elapsed_ms)
                del self._load_ms[:-LOAD_TIMES_KEPT]
        if refusal is not None:
            raise refusal
        log.info("loaded %s v%s (%s) in %.0f ms, about %s MiB", *key, arm, elapsed_ms, _mib(size))
        return loaded

    def _room_for(self, key: Key, arm: str, size: int, evict: bool) -> LoadRefusedError | None:
        """None when ``size`` more fits (after evictions), else the refusal (lock held)."""
        used = sum(e.size for e in self._entries.values())
        if size > self.budget_bytes:
            self.refused += 1
            return LoadRefusedError(*key, arm, self._too_big(key, size), 3600.0, TOO_BIG)
        if used + size <= self.budget_bytes:
            return None
        if not evict:
            return LoadRefusedError(*key, arm, self._no_room(key, size), self.retry_after_s, NO_ROOM)
        # Unrouted versions first, then the least recently used; never a leased one.
        candidates = sorted((e.routed, e.last_used, k) for k, e in self._entries.items() if not e.leases)
        held = used - sum(self._entries[k].size for _, _, k in candidates)
        if held + size > self.budget_bytes:
            self.refused += 1
            return LoadRefusedError(
                *key,
                arm,
                f"{key[0]} v{key[1]} needs about {_mib(size)} MiB but the memory budget of "
                f"{_mib(self.budget_bytes)} MiB (FACTORY_GATEWAY_MEMORY_MB) is held by versions "
                f"answering requests in flight ({_mib(held)} MiB): retry in a moment",
                1.0,
                BUDGET_HELD,
            )
        for _, _, k in candidates:
            if used + size <= self.budget_bytes:
                break
            used -= self._entries.pop(k).size
            self.evictions += 1
        return None


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


class Lease:
    """:meth:`ModelStore.lease`'s context manager: a class, not a generator (one per request)."""

    __slots__ = ("_arm", "_key", "_loaded", "_store")

    def __init__(self, store: ModelStore, key: Key, arm: str) -> None:
        self._store, self._key, self._arm = store, key, arm
        self._loaded: LoadedVersion | None = None

    def __enter__(self) -> LoadedVersion:
        self._loaded = self._store._acquire(self._key, self._arm, lease=True)
        return self._loaded

    def __exit__(self, *exc: object) -> None:
        if self._loaded is not None:
            self._store._release(self._key, self._loaded)
            self._loaded = None
