"""The project CLI for things that need no Airflow: check specs, make demo data, show state.

    model-factory validate-specs [PATH ...]
    model-factory summary [--json]
    model-factory status [MODEL]
    model-factory promote MODEL [VERSION] --reason "..."   # the running canary, or VERSION
    model-factory rollback MODEL --reason "..."            # the canary, else the champion
    model-factory abort|unpin MODEL --reason "..."
    model-factory pin MODEL VERSION --reason "..."
    model-factory canary MODEL VERSION --reason "..."      # start a canary by hand
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from model_factory.settings import FactorySettings
from model_factory.spec import SpecError, load_spec, load_specs


def validate_specs(paths: list[str]) -> int:
    settings = FactorySettings.from_env()
    files = [Path(p) for p in paths] or sorted(settings.specs_dir.glob("*.yaml"))
    if not files:
        print(f"no spec files found in {settings.specs_dir}", file=sys.stderr)
        return 1
    failures = 0
    for path in files:
        try:
            spec = load_spec(path)
            print(f"ok    {path}  ({spec.name}: {spec.task}, {spec.estimator.class_})")
        except SpecError as exc:
            failures += 1
            print(f"FAIL  {exc}", file=sys.stderr)
    return 1 if failures else 0


def summary(as_json: bool) -> int:
    from model_factory.rollout.summary import format_table, model_rows

    settings = FactorySettings.from_env()
    good, bad = load_specs(settings.specs_dir)
    rows = model_rows(settings, [loaded.spec for loaded in good])
    print(json.dumps(rows, indent=2, default=str) if as_json else format_table(rows))
    for error in bad:
        print(f"\nskipped: {error}", file=sys.stderr)
    return 0


def _actor(args: argparse.Namespace) -> str:
    return args.actor or os.environ.get("FACTORY_ACTOR") or getpass.getuser()


def _recorded(decision: dict, settings: FactorySettings) -> dict:
    """Decisions go to the prediction DB too, beside the gateway's own records."""
    from model_factory.serving.predlog import write_decision
    from model_factory.serving.settings import prediction_db_uri

    if decision.get("changed", True):
        write_decision(prediction_db_uri(settings), decision)
    return decision


def ops(args: argparse.Namespace) -> int:
    """promote / rollback / abort / pin / unpin / canary: who and why are recorded."""
    from model_factory.pipeline.registry import PromotionError
    from model_factory.rollout.canary import ops_action, start_canary
    from model_factory.spec import load_spec

    settings = FactorySettings.from_env()
    actor = f"{_actor(args)} via cli"
    try:
        if args.command == "canary":
            spec = load_spec(settings.specs_dir / f"{args.model}.yaml")
            share = args.share if args.share is not None else spec.canary.ramp[0]
            decision = start_canary(args.model, args.version, share, settings, actor, args.reason)
        else:
            version = getattr(args, "version", None)
            decision = ops_action(args.model, args.command, settings, actor, args.reason, version)
    except PromotionError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(_recorded(decision, settings), default=str))
    return 0


def status(model: str | None) -> int:
    """Which versions serve: champion, canary and its share, pinned."""
    from dataclasses import asdict

    from model_factory.rollout.canary import read_serving_state

    settings = FactorySettings.from_env()
    models = [model] if model else [loaded.spec.name for loaded in load_specs(settings.specs_dir)[0]]
    for name in models:
        state = asdict(read_serving_state(name, settings))
        state.pop("tags", None)
        print(json.dumps(state))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="model_factory.cli.main", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate-specs", help="parse specs; exit 1 naming file/field/reason")
    check.add_argument("paths", nargs="*", help="spec files (default: every spec in FACTORY_SPECS_DIR)")
    show = sub.add_parser("summary", help="per model: versions, champion, quarantined batches")
    show.add_argument("--json", action="store_true")
    state = sub.add_parser("status", help="which versions serve: champion, canary + share, pinned")
    state.add_argument("model", nargs="?")
    up = sub.add_parser("promote", help="the running canary, or VERSION, becomes champion")
    up.add_argument("model")
    up.add_argument("version", nargs="?")
    back = sub.add_parser("rollback", help="roll the canary back; with none, champion -> previous_champion")
    back.add_argument("model")
    abort = sub.add_parser("abort", help="stop the canary without a verdict (challenger alias stays)")
    abort.add_argument("model")
    pin = sub.add_parser("pin", help="serve exactly VERSION; no canary starts until unpin")
    pin.add_argument("model")
    pin.add_argument("version")
    unpin = sub.add_parser("unpin", help="allow canaries again")
    unpin.add_argument("model")
    canary = sub.add_parser("canary", help="start a canary of a blessed VERSION by hand")
    canary.add_argument("model")
    canary.add_argument("version")
    canary.add_argument("--share", type=float, help="traffic share (default: the spec's first ramp step)")
    for command in (up, back, abort, pin, unpin, canary):
        command.add_argument("--reason", required=True, help="why: recorded on the version")
        command.add_argument("--actor", help="who (default: $FACTORY_ACTOR or the login name)")
    args = parser.parse_args(argv)
    if args.command == "validate-specs":
        return validate_specs(args.paths)
    if args.command == "summary":
        return summary(args.json)
    if args.command == "status":
        return status(args.model)
    return ops(args)


def run() -> None:
    """The ``model-factory`` console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
