"""The project CLI for things that need no Airflow: check specs, make demo data, show state.

    python -m model_factory.cli validate-specs [PATH ...]
    python -m model_factory.cli summary
"""

from __future__ import annotations

import argparse
import json
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="model_factory.cli", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("validate-specs", help="parse specs; exit 1 naming file/field/reason")
    check.add_argument("paths", nargs="*", help="spec files (default: every spec in FACTORY_SPECS_DIR)")
    show = sub.add_parser("summary", help="per model: versions, champion, quarantined batches")
    show.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "validate-specs":
        return validate_specs(args.paths)
    return summary(args.json)


if __name__ == "__main__":
    sys.exit(main())
