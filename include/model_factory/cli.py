"""The project CLI for things that need no Airflow: check specs, make demo data, show state.

    python -m model_factory.cli validate-specs [PATH ...]
    python -m model_factory.cli summary [--json]
    python -m model_factory.cli promote MODEL VERSION --reason "..."
    python -m model_factory.cli rollback MODEL --reason "..."
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from model_factory.config import FactorySettings
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
    from model_factory.summary import format_table, model_rows

    settings = FactorySettings.from_env()
    good, bad = load_specs(settings.specs_dir)
    rows = model_rows(settings, [loaded.spec for loaded in good])
    print(json.dumps(rows, indent=2) if as_json else format_table(rows))
    for error in bad:
        print(f"\nskipped: {error}", file=sys.stderr)
    return 0


def change_champion(args: argparse.Namespace) -> int:
    from model_factory.registry import PromotionError, promote, rollback

    settings = FactorySettings.from_env()
    actor = args.actor or os.environ.get("FACTORY_ACTOR") or getpass.getuser()
    try:
        if args.command == "promote":
            result = promote(args.model, args.version, settings, actor, args.reason)
        else:
            result = rollback(args.model, settings, actor, args.reason)
    except PromotionError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="model_factory.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate-specs", help="parse specs; exit 1 naming file/field/reason")
    check.add_argument("paths", nargs="*", help="spec files (default: every spec in FACTORY_SPECS_DIR)")
    show = sub.add_parser("summary", help="per model: versions, champion, quarantined batches")
    show.add_argument("--json", action="store_true")
    up = sub.add_parser("promote", help="make a blessed version the champion (old one: previous_champion)")
    up.add_argument("model")
    up.add_argument("version")
    back = sub.add_parser("rollback", help="give champion back to the previous_champion version")
    back.add_argument("model")
    for command in (up, back):
        command.add_argument("--reason", required=True, help="why: recorded on the version")
        command.add_argument("--actor", help="who (default: $FACTORY_ACTOR or the login name)")
    args = parser.parse_args(argv)
    if args.command == "validate-specs":
        return validate_specs(args.paths)
    if args.command == "summary":
        return summary(args.json)
    return change_champion(args)


if __name__ == "__main__":
    sys.exit(main())
