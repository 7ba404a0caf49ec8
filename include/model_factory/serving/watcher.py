"""Keeps the gateway's routes in step with the registry: aliases, canary share, loaded versions.

Every refresh reads each model's aliases and canary tags (one registry call per model), loads any
new version fully in this background thread, and only then swaps the route table in one
assignment. A request holds the route it started with, so a swap never fails it (hot swap).
Registry down: the loaded versions keep serving and the error is reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from model_factory.io import tag_schema, tracking
from model_factory.io.registry_state import CHAMPION, ServingState, serving_state
from model_factory.serving.models import LoadedVersion, LoadError, load_version
from model_factory.serving.routing import CANARY_ARM, CHAMPION_ARM, SHADOW_ARM, choose_arm, shadow_sampled
from model_factory.serving.settings import GatewaySettings, redact
from model_factory.spec import load_specs
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

LoadFailure = Callable[[str, str, str, str], None]
"""Called once per failing (model, version) with (model, version, arm, message)."""


@dataclass(frozen=True, eq=False)
class Route:
    model: str
    champion: LoadedVersion | None
    canary: LoadedVersion | None
    share: float
    """Share actually routed to the canary: 0 unless both versions are loaded."""
    state: ServingState | None
    errors: tuple[str, ...] = ()
    refreshed_at: float = field(default_factory=time.time)
    shadow: LoadedVersion | None = None
    """Scored beside the champion off the response path; never answers a caller."""
    shadow_share: float = 0.0
    """Share of the champion's requests the shadow also scores: 0 unless it is loaded."""

    def pick(self, key: str) -> tuple[str, LoadedVersion]:
        """(arm, version) for a caller key; requires a champion."""
        assert self.champion is not None
        canary = self.canary
        arm = choose_arm(key, self.model, canary.version if canary else None, self.share)
        return (CANARY_ARM, canary) if arm == CANARY_ARM and canary else (CHAMPION_ARM, self.champion)

    def shadow_for(self, key: str) -> LoadedVersion | None:
        """The shadow to score this caller's request with, if it is in the shadow's share."""
        shadow = self.shadow
        if shadow is None or not shadow_sampled(key, self.model, shadow.version, self.shadow_share):
            return None
        return shadow

    @property
    def compiled(self) -> bool:
        """Every version this route serves runs on the compiled fast path (microseconds a row)."""
        return all(v is None or v.fast is not None for v in (self.champion, self.canary))

    def status(self) -> dict:
        state = self.state
        return {
            "model": self.model,
            "champion": self.champion.describe() if self.champion else None,
            "canary": self.canary.describe() if self.canary else None,
            "share": self.share,
            "shadow": self.shadow.describe() if self.shadow else None,
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
        self.on_load_failure = on_load_failure
        self.loader = loader
        self._routes: dict[str, Route] = {}
        self._cache: dict[tuple[str, str], LoadedVersion] = {}
        self._failed: dict[tuple[str, ...], str] = {}
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
        """A version loaded by this process (serving now or kept for the current routes)."""
        return self._cache.get((model, str(version)))

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

    def refresh(self) -> dict[str, Route]:
        """One pass over the registry; returns the route table now in use."""
        with self._refresh_lock:
            self.refreshes += 1
            try:
                client = tracking.connect(self.settings.factory, attempts=1)
                names = self._model_names(client)
            except Exception as exc:
                self._registry_down(exc)
                return self._routes
            routes: dict[str, Route] = {}
            failure: Exception | None = None
            for name in names:
                try:
                    state = serving_state(client, name)
                except Exception as exc:
                    if getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST":
                        why = f"model {name!r} is not registered"
                        if name in self._spec_names:
                            why += ": it has a spec, but no version was trained and registered yet"
                        routes[name] = Route(name, None, None, 0.0, None, (why,))
                        continue
                    failure = failure or exc
                    if name in self._routes:
                        routes[name] = self._routes[name]
                    continue
                routes[name] = self._build(client, state)
            self._routes = routes  # the swap: one assignment
            used = {
                (r.model, v.version) for r in routes.values() for v in (r.champion, r.canary, r.shadow) if v
            }
            self._cache = {key: loaded for key, loaded in self._cache.items() if key in used}
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

    def _model_names(self, client) -> list[str]:
        """The configured models; else every registered model with a champion and every model
        that has a spec (one without a servable version is reported, and answers 503)."""
        if self.settings.models:
            return list(self.settings.models)
        names, token = [], None
        while True:
            page = client.search_registered_models(max_results=100, page_token=token)
            names += [m.name for m in page if CHAMPION in (m.aliases or {})]
            token = page.token
            if not token:
                break
        return sorted(set(names) | set(self._specced_models()))

    def _specced_models(self) -> list[str]:
        """Names of the valid specs in the specs folder (re-read only when a file changed)."""
        folder = self.settings.factory.specs_dir
        try:
            seen = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.yaml")))
        except OSError:
            return self._spec_names
        if seen != self._specs_seen:
            good, _ = load_specs(folder)
            self._specs_seen, self._spec_names = seen, sorted(s.spec.registered_model_name for s in good)
        return self._spec_names

    def _get(self, client, model: str, version: str, arm: str) -> tuple[LoadedVersion | None, str | None]:
        key = (model, version)
        if key in self._cache:
            return self._cache[key], None
        try:
            loaded = self.loader(client, model, version, self.settings.factory.specs_dir)
        except LoadError as exc:
            message = redact(str(exc))
            # A shadow's failure is reported on its own: it must not stand in for the report the
            # canary analysis needs if the same version is later made the canary.
            reported = (model, version, arm) if arm == SHADOW_ARM else key
            if reported not in self._failed and self.on_load_failure is not None:
                try:
                    self.on_load_failure(model, version, arm, message)
                except Exception:
                    log.exception("could not report the load failure of %s v%s", model, version)
            self._failed[reported] = message
            log.error("cannot load %s %s: %s", arm, key, message)
            return None, message
        self._failed.pop(key, None)
        self._failed.pop((model, version, SHADOW_ARM), None)
        self._cache[key] = loaded
        limit_threads(self.settings.threads)  # a new model may have loaded a new OpenMP/BLAS pool
        log.info("loaded %s v%s (%s) in %.2fs", model, version, arm, loaded.load_seconds)
        return loaded, None

    def _build(self, client, state: ServingState) -> Route:
        previous = self._routes.get(state.model)
        errors: list[str] = []
        champion = None
        if state.champion is None:
            errors.append(_why_no_champion(client, state.model))
        else:
            champion, error = self._get(client, state.model, state.champion, CHAMPION_ARM)
            if error:
                kept = previous.champion if previous else None
                errors.append(
                    f"champion v{state.champion} failed to load: {error}"
                    + (f"; still serving v{kept.version}" if kept else "")
                )
                champion = kept
        canary = None
        if state.canary is not None and state.canary != state.champion:
            canary, error = self._get(client, state.model, state.canary, CANARY_ARM)
            if error:
                errors.append(f"canary v{state.canary} failed to load, no traffic sent to it: {error}")
        share = state.share if canary is not None and champion is not None else 0.0
        shadow = None
        if (
            state.shadow is not None
            and state.shadow_share > 0
            and state.shadow not in (state.champion, state.canary)
        ):
            shadow, error = self._get(client, state.model, state.shadow, SHADOW_ARM)
            if error:
                errors.append(f"shadow v{state.shadow} failed to load, not scored: {error}")
        shadow_share = state.shadow_share if shadow is not None and champion is not None else 0.0
        return Route(state.model, champion, canary, share, state, tuple(errors),
                     shadow=shadow, shadow_share=shadow_share)  # fmt: skip


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
