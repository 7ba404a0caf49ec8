"""Keeps the gateway's routes in step with the registry: aliases, canary and shadow shares.

Every refresh reads the registered models (one paged search when the gateway serves every model,
one call per model when it is configured with a list) and swaps the route table in one
assignment. A route names versions; it holds no model. The versions live in the
:class:`~model_factory.serving.model_store.ModelStore`, loaded on first use within the memory
budget. The refresh thread loads a route's new versions itself, before the swap, only for a model
in use (one of its versions is resident, or a load failed) and, in a small fleet, for every model
(``preload_models``): a busy model's new champion is loaded off the request path, and a version
that fails to load is reported and gets no traffic. A request holds the route it started with,
so a swap never fails it (hot swap). Registry down: the loaded versions keep serving and the error
is reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from model_factory.io import tag_schema, tracking
from model_factory.io.registry_state import CHAMPION, ServingState, serving_state, serving_state_of
from model_factory.serving.model_store import NO_ROOM, LoadRefusedError, ModelStore
from model_factory.serving.models import LoadedVersion, load_version
from model_factory.serving.routing import CANARY_ARM, CHAMPION_ARM, SHADOW_ARM, choose_arm, shadow_sampled
from model_factory.serving.settings import GatewaySettings, redact
from model_factory.spec import load_specs
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

LoadFailure = Callable[[str, str, str, str], None]
"""Called once per failing (model, version) with (model, version, arm, message)."""
MIB = 1024 * 1024


@dataclass(frozen=True, eq=False)
class Route:
    model: str
    champion_version: str | None
    canary_version: str | None
    share: float
    """Share routed to the canary: 0 unless both versions are servable."""
    state: ServingState | None
    errors: tuple[str, ...] = ()
    refreshed_at: float = field(default_factory=time.time)
    shadow_version: str | None = None
    """Scored beside the champion off the response path; never answers a caller."""
    shadow_share: float = 0.0
    """Share of the champion's requests the shadow also scores: 0 unless it is servable."""
    store: ModelStore | None = field(default=None, repr=False)
    """Where this route's versions are loaded (None: a route without a registry behind it)."""

    def pick(self, key: str) -> tuple[str, str]:
        """(arm, version) for a caller key; requires a champion."""
        assert self.champion_version is not None
        canary = self.canary_version
        arm = choose_arm(key, self.model, canary, self.share)
        return (CANARY_ARM, canary) if arm == CANARY_ARM and canary else (CHAMPION_ARM, self.champion_version)

    def shadow_for(self, key: str) -> str | None:
        """The shadow version to score this caller's request with, if it is in the shadow's share."""
        shadow = self.shadow_version
        if shadow is None or not shadow_sampled(key, self.model, shadow, self.shadow_share):
            return None
        return shadow

    def resident(self, version: str | None) -> LoadedVersion | None:
        """The loaded version when it is in memory now (never loads)."""
        return None if version is None or self.store is None else self.store.peek(self.model, version)

    @property
    def compiled(self) -> bool:
        """Every version this route serves is in memory and runs on the compiled fast path
        (microseconds a row): a request can be answered without loading anything."""
        for version in (self.champion_version, self.canary_version):
            if version is not None:
                loaded = self.resident(version)
                if loaded is None or loaded.fast is None:
                    return False
        return True

    def _describe(self, version: str | None) -> dict | None:
        if version is None:
            return None
        loaded = self.resident(version)
        return {**loaded.describe(), "resident": True} if loaded else {"version": version, "resident": False}

    def status(self) -> dict:
        state = self.state
        return {
            "model": self.model,
            "champion": self._describe(self.champion_version),
            "canary": self._describe(self.canary_version),
            "share": self.share,
            "shadow": self._describe(self.shadow_version),
            "shadow_share": self.shadow_share,
            "registry": None
            if state is None
            else {
                "champion": state.champion,
                "canary": state.canary,
                "share": state.share,
                "stage": state.stage,
                "started_at": state.started_at,
                "status": state.status,
                "pinned": state.pinned,
                "shadow": state.shadow,
                "shadow_share": state.shadow_share,
            },
            "errors": list(self.errors),
            "refreshed_at": self.refreshed_at,
        }


class RegistryWatcher:
    def __init__(
        self,
        settings: GatewaySettings,
        on_load_failure: LoadFailure | None = None,
        loader: Callable[..., LoadedVersion] = load_version,
    ):
        self.settings = settings
        self.loader = loader
        self.store = ModelStore(
            int(settings.memory_mb * MIB),
            self._load,
            on_load_failure=on_load_failure,
            retry_after_s=settings.refresh_s,
        )
        self._client: Any = None  # the last refresh's registry client, reused by loads
        self._routes: dict[str, Route] = {}
        self.registry_error: str | None = None
        self.registry_error_since: float | None = None
        self.last_success: float | None = None
        self.refreshes = 0
        self._refresh_lock = threading.Lock()
        self._specs_seen: tuple = ()
        self._spec_names: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def routes(self) -> dict[str, Route]:
        return self._routes

    def loaded(self, model: str, version: str) -> LoadedVersion | None:
        """A version this process holds in memory now."""
        return self.store.peek(model, str(version))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="registry-watcher", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.refresh_s):
            try:
                self.refresh()
            except Exception:  # never let the thread die
                log.exception("registry refresh failed")

    def _load(self, model: str, version: str) -> LoadedVersion:
        """The store's loader: the one safe loader, with this process's registry client."""
        client = self._client or tracking.connect(self.settings.factory, attempts=1)
        loaded = self.loader(client, model, version, self.settings.factory)
        limit_threads(self.settings.threads)  # a new model may have loaded a new OpenMP/BLAS pool
        return loaded

    def refresh(self) -> dict[str, Route]:
        """One pass over the registry; returns the route table now in use."""
        with self._refresh_lock:
            self.refreshes += 1
            try:
                client = tracking.connect(self.settings.factory, attempts=1)
                names, found = self._model_names(client)
            except Exception as exc:
                self._registry_down(exc)
                return self._routes
            self._client = client
            in_use = {model for model, _ in self.store.failures()} | {v.model for v in self.store.resident()}
            preload = len(names) <= self.settings.preload_models
            routes: dict[str, Route] = {}
            failure: Exception | None = None
            for name in names:
                try:
                    state = found[name] if name in found else serving_state(client, name)
                except Exception as exc:
                    if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                        why = f"model {name!r} is not registered"
                        if name in self._spec_names:
                            why += ": it has a spec, but no version was trained and registered yet"
                        routes[name] = Route(name, None, None, 0.0, None, (why,), store=self.store)
                        continue
                    failure = failure or exc
                    if name in self._routes:
                        routes[name] = self._routes[name]
                    continue
                routes[name] = self._build(client, state, warm=name in in_use, preload=preload)
            self._routes = routes  # the swap: one assignment
            self.store.retain(
                {
                    (r.model, v)
                    for r in routes.values()
                    for v in (r.champion_version, r.canary_version, r.shadow_version)
                    if v
                }
            )
            if failure is not None:
                self._registry_down(failure)
            else:
                self.registry_error = self.registry_error_since = None
                self.last_success = time.time()
            return routes

    def _registry_down(self, exc: Exception) -> None:
        message = redact(str(exc).splitlines()[0][:300]) if str(exc) else ""
        self.registry_error = f"{type(exc).__name__}: {message}"
        self.registry_error_since = self.registry_error_since or time.time()
        log.warning("registry unreachable, serving the loaded versions: %s", self.registry_error)

    def _model_names(self, client) -> tuple[list[str], dict[str, ServingState]]:
        """The configured models (their states read one by one); else every registered model with
        a champion and every model that has a spec (one without a servable version is reported,
        and answers 503), with the states of the registered ones from the same paged search."""
        if self.settings.models:
            return list(self.settings.models), {}
        found: dict[str, ServingState] = {}
        token = None
        while True:
            page = client.search_registered_models(max_results=1000, page_token=token)
            for registered in page:
                if CHAMPION in (registered.aliases or {}):
                    found[registered.name] = serving_state_of(registered)
            token = page.token
            if not token:
                break
        return sorted(set(found) | set(self._specced_models())), found

    def _specced_models(self) -> list[str]:
        """Names of the valid specs in the specs folder (re-read only when a file changed)."""
        folder = self.settings.factory.specs_dir
        try:
            seen = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.yaml")))
        except OSError:
            return self._spec_names
        if seen != self._specs_seen:
            good, _ = load_specs(folder, self.settings.factory)
            self._specs_seen, self._spec_names = seen, sorted(s.spec.registered_model_name for s in good)
        return self._spec_names

    def _verify(self, model: str, version: str, arm: str, evict: bool) -> str | None:
        """Load ``version`` now (off the request path); the reason when it cannot serve."""
        try:
            self.store.get(model, version, arm, retry=True, evict=evict)
        except LoadRefusedError as refused:
            return None if refused.cause == NO_ROOM else refused.reason
        return None

    def _build(self, client, state: ServingState, warm: bool, preload: bool) -> Route:
        """The model's route. ``warm`` (the model is in use): its versions are loaded now, evicting
        others if need be; ``preload`` (a small fleet): loaded now if they fit beside the others.
        Otherwise nothing is loaded: the first request loads what it needs."""
        previous = self._routes.get(state.model)
        load = warm or preload
        errors: list[str] = []
        champion = state.champion
        if champion is None:
            errors.append(_why_no_champion(client, state.model))
        elif load and (error := self._verify(state.model, champion, CHAMPION_ARM, evict=warm)):
            kept = previous.champion_version if previous else None
            kept = kept if kept != champion and not self.store.failure(state.model, kept or "") else None
            errors.append(
                f"champion v{champion} failed to load: {error}" + (f"; still serving v{kept}" if kept else "")
            )
            champion = kept
        canary = state.canary if state.canary != state.champion else None
        if canary is not None and load and (error := self._verify(state.model, canary, CANARY_ARM, warm)):
            errors.append(f"canary v{canary} failed to load, no traffic sent to it: {error}")
            canary = None
        share = state.share if canary is not None and champion is not None else 0.0
        shadow = state.shadow
        if shadow is None or state.shadow_share <= 0 or shadow in (state.champion, state.canary):
            shadow = None
        elif load and (error := self._verify(state.model, shadow, SHADOW_ARM, warm)):
            errors.append(f"shadow v{shadow} failed to load, not scored: {error}")
            shadow = None
        shadow_share = state.shadow_share if shadow is not None and champion is not None else 0.0
        return Route(
            state.model,
            champion,
            canary,
            share,
            state,
            tuple(errors),
            shadow_version=shadow,
            shadow_share=shadow_share,
            store=self.store,
        )


def limit_threads(threads: int) -> None:
    """Every BLAS/OpenMP pool loaded in this process to ``threads``: one request is one row or a
    few, where extra threads only fight each other (and the other worker processes) for cores."""
    threadpool_limits(limits=threads)


def _why_no_champion(client, model: str) -> str:
    """Why a registered model has nothing to serve, from its latest version's decision."""
    try:
        versions = client.search_model_versions(f"name = '{model}'")
    except Exception:
        versions = []
    if not versions:
        return "no champion yet: no version is registered"
    latest = max(versions, key=lambda v: int(v.version))
    decision = (latest.tags or {}).get(tag_schema.DECISION)
    reason = (latest.tags or {}).get(tag_schema.DECISION_REASON, "no reason recorded")
    if decision == "held_for_review":
        return f"no champion yet: v{latest.version} is held for review ({reason})"
    if decision == "rejected":
        return f"no champion yet: the latest version, v{latest.version}, was rejected ({reason})"
    return (
        "no champion yet: the registry has no champion alias "
        f"(latest v{latest.version}: {decision or 'not evaluated'})"
    )
