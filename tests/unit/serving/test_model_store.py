"""The model store on its own (no registry, no HTTP): LRU within a budget, leases, refusals that
say why, one load per version however many first requests arrive together."""

from __future__ import annotations

import threading
import time

import pytest
from model_factory.serving.model_store import (
    BUDGET_HELD,
    FAILED,
    NO_ROOM,
    TOO_BIG,
    LoadRefusedError,
    ModelStore,
    estimated_bytes,
    percentile,
)
from model_factory.serving.models import LoadedVersion, LoadError
from model_factory.spec import ModelSpec

from tests.unit.pipeline.test_training_evaluation import spec_for
from tests.unit.serving.versions import loaded_version

SPEC: ModelSpec = spec_for("churn")
MIB = 1024 * 1024


def fake_version(model: str, version: str, pickled_bytes: int = 0) -> LoadedVersion:
    return loaded_version(model, version, spec=SPEC, loaded_at=time.time(), pickled_bytes=pickled_bytes)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0  # every reading is later than the one before: recency is unambiguous
        return self.now


class Loader:
    """Counts loads; ``sizes`` in MiB per model (default 1); ``broken`` models raise LoadError."""

    def __init__(self, sizes: dict[str, int] | None = None, broken: set[str] | None = None) -> None:
        self.sizes, self.broken, self.calls = sizes or {}, broken or set(), []

    def __call__(self, model: str, version: str) -> LoadedVersion:
        self.calls.append((model, version))
        if model in self.broken:
            raise LoadError(f"{model} v{version}: its artifacts cannot be downloaded (gone)")
        return fake_version(model, version, self.sizes.get(model, 1) * MIB)


def store_of(loader: Loader, budget_mib: int, **kwargs) -> ModelStore:
    return ModelStore(budget_mib * MIB, loader, size_of=lambda v: v.pickled_bytes, clock=Clock(), **kwargs)


def resident(store: ModelStore) -> set[str]:
    return {v.model for v in store.resident()}


def test_least_recently_used_is_evicted_and_a_busy_model_stays():
    loader = Loader()
    store = store_of(loader, budget_mib=3)
    for model in ("a", "b", "c"):
        store.get(model, "1", "champion")
    store.get("a", "1", "champion")  # a is busy: used again
    store.get("d", "1", "champion")  # needs room: b is the least recently used
    assert resident(store) == {"a", "c", "d"}
    assert store.stats().evictions == 1 and store.stats().resident_bytes == 3 * MIB
    assert loader.calls.count(("a", "1")) == 1  # a second get is a hit, not a load


def test_versions_no_longer_routed_go_first():
    store = store_of(Loader(), budget_mib=2)
    store.get("old", "1", "champion")
    store.get("kept", "1", "champion")
    store.get("old", "1", "champion")  # old is the most recent, but no route names it any more
    store.retain({("kept", "1"), ("old", "1"), ("new", "2")})
    store.retain({("kept", "1"), ("new", "2")})  # not leased: dropped at once
    assert resident(store) == {"kept"}
    store.get("new", "2", "champion")
    assert resident(store) == {"kept", "new"}


def test_a_leased_version_is_never_evicted_and_a_full_budget_of_leases_refuses_with_the_reason():
    store = store_of(Loader(), budget_mib=2)
    with store.lease("a", "1", "champion") as a, store.lease("b", "1", "champion"):
        assert a.model == "a"
        with pytest.raises(LoadRefusedError) as refused:
            store.get("c", "1", "champion")
        assert refused.value.cause == BUDGET_HELD and refused.value.retry_after_s == 1.0
        assert "held by versions answering requests in flight" in refused.value.reason
        assert "FACTORY_GATEWAY_MEMORY_MB" in refused.value.reason
        assert resident(store) == {"a", "b"}  # nothing in flight was dropped
    with store.lease("a", "1", "champion"):  # a held again; b released: b is evicted for c
        store.get("c", "1", "champion")
        assert resident(store) == {"a", "c"}
    assert store.stats().leased_versions == 0


def test_a_version_bigger_than_the_budget_is_refused_and_not_loaded_again():
    loader = Loader(sizes={"huge": 5})
    store = store_of(loader, budget_mib=4)
    store.get("small", "1", "champion")
    for _ in range(2):
        with pytest.raises(LoadRefusedError) as refused:
            store.get("huge", "7", "champion")
        assert refused.value.cause == TOO_BIG
        assert refused.value.reason.startswith("huge v7 needs about 5.0 MiB resident, more than")
        assert "memory budget of 4.0 MiB (FACTORY_GATEWAY_MEMORY_MB)" in refused.value.reason
    assert loader.calls.count(("huge", "7")) == 1  # its size is known: the second is refused at once
    assert resident(store) == {"small"}  # nothing was evicted for a version that cannot fit anyway


def test_concurrent_first_requests_load_a_version_once():
    release = threading.Event()
    loader = Loader()

    def slow(model: str, version: str) -> LoadedVersion:
        assert release.wait(60)
        return loader(model, version)

    store = ModelStore(10 * MIB, slow, size_of=lambda v: v.pickled_bytes)
    got: list[LoadedVersion] = []
    threads = [threading.Thread(target=lambda: got.append(store.get("m", "1", "champion"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not store._loading and time.monotonic() < deadline:  # the first one is loading
        time.sleep(0.01)
    release.set()
    for thread in threads:
        thread.join(60)
    assert len(got) == 8 and len({id(v) for v in got}) == 1
    assert loader.calls == [("m", "1")] and store.stats().loads == 1


def test_a_failed_load_is_reported_once_remembered_for_a_while_then_tried_again():
    loader = Loader(broken={"bad"})
    reports = []
    clock = Clock()
    store = ModelStore(
        4 * MIB,
        loader,
        size_of=lambda v: v.pickled_bytes,
        clock=clock,
        retry_after_s=10,
        on_load_failure=lambda *args: reports.append(args),
    )
    for _ in range(3):
        with pytest.raises(LoadRefusedError) as refused:
            store.get("bad", "2", "canary")
        assert refused.value.cause == FAILED
        assert refused.value.reason == (
            "bad v2 cannot be loaded: bad v2: its artifacts cannot be downloaded (gone)"
        )
    assert loader.calls == [("bad", "2")]  # within the window: answered from memory
    assert store.failure("bad", "2") is not None
    clock.now += 100
    with pytest.raises(LoadRefusedError):
        store.get("bad", "2", "canary")
    assert len(loader.calls) == 2
    with pytest.raises(LoadRefusedError):
        store.get("bad", "2", "canary", retry=True)  # the watcher's refresh retries at once
    assert len(loader.calls) == 3
    assert [r[:3] for r in reports] == [("bad", "2", "canary")]  # reported once


def test_warming_without_eviction_only_fills_free_room():
    loader = Loader()
    store = store_of(loader, budget_mib=2)
    store.get("a", "1", "champion", evict=False)
    store.get("b", "1", "champion", evict=False)
    with pytest.raises(LoadRefusedError) as refused:
        store.get("c", "1", "champion", evict=False)
    assert refused.value.cause == NO_ROOM and resident(store) == {"a", "b"}
    with pytest.raises(LoadRefusedError):
        store.get("c", "1", "champion", evict=False)
    assert loader.calls.count(("c", "1")) == 1  # its size is known now: not loaded again to find out
    store.get("c", "1", "champion")  # a request may evict
    assert "c" in resident(store)


def test_stats_give_cold_load_percentiles_and_the_estimate_is_stated():
    store = ModelStore(100 * MIB, Loader(), size_of=lambda v: v.pickled_bytes)
    for model in "abcd":
        store.get(model, "1", "champion")
    described = store.stats().describe()
    assert described["loaded_versions"] == 4 and described["cold_loads"] == 4
    assert described["budget_mib"] == 100.0 and described["resident_mib"] == 4.0
    p50, p99 = described["cold_load_p50_ms"], described["cold_load_p99_ms"]
    assert p50 is not None and p99 >= p50
    assert percentile([], 99) is None and percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile(list(range(101)), 99) == pytest.approx(99.0)
    assert estimated_bytes(fake_version("m", "1", pickled_bytes=MIB)) > MIB  # more than its pickle
