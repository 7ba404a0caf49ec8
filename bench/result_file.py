"""A bench script's result file, written the same way by every script run by hand."""

from __future__ import annotations

import json
from pathlib import Path


def write_result(result: dict, out: Path | None) -> int:
    """``result`` as JSON at ``out`` (its folder made), saying where; nothing without ``out``.
    Returns 0, the script's exit code."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
    return 0
