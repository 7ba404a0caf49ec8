"""The core library receives its settings from its caller; only the entry points read the
environment (issue 19, point 4). A read anywhere else fails here, naming file and line.

Entry points: the Airflow layer (``airflow/``), the CLI (``cli/``), the gateway's ``__main__``,
and ``settings.py`` itself (``FactorySettings.from_env()``, the one reader of ``FACTORY_*``).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "model_factory"
ENTRY_POINTS = ("airflow/", "cli/", "serving/__main__.py", "settings.py")

# (file, enclosing function or "<module>") -> why that read of the environment stays.
ALLOWED = {
    ("io/tracking.py", "<module>"): "MLflow's own switches (request timeout, retries, telemetry, "
    "progress bar), set before MLflow is imported; setdefault, so a deployment's value wins",
    ("io/tracking.py", "_point_at"): "undoes MLflow's write of MLFLOW_TRACKING_URI/REGISTRY_URI "
    "into os.environ (the next from_env() would read MLflow's copy)",
    ("pipeline/contract.py", "check_contract"): "GX_ANALYTICS_ENABLED=false before GX is imported "
    "(GX's own switch; setdefault)",
    ("pipeline/validation.py", "__init__"): "the same GX switch",
    ("io/storage.py", "_s3_client"): "boto3's own AWS_DEFAULT_REGION, the region default of an "
    "S3 client without one",
    ("io/airflow_api.py", "from_settings"): "Airflow's own AIRFLOW_HOME: where the embedded Airflow "
    "keeps the password it generated (not a factory setting)",
    ("analyzer/hooks.py", "__exit__"): "an entry point: the recorder around a whole CLI action "
    "(a decorator made at import) reads the settings once, when the action ends",
    ("io/batches.py", "resolve_source_uri"): "a source URI's ${VAR} is filled from the worker's "
    "environment at run time (the spec feature itself; the allow-list keeps secrets out)",
    ("io/registry_read.py", "read_registry"): "MLflow's own client variables (auth, TLS) that "
    "MLflow's client would honour: set, the read falls back to that client",
    ("io/registry_read.py", "_workspaces_enabled"): "MLflow's own MLFLOW_ENABLE_WORKSPACES, the same",
    ("io/registry_read.py", "_from_rest"): "MLflow's own client variables (token, user and password, "
    "TLS, request timeout), read as MLflow's REST client reads them: this read stands in for it",
}


def _environment_reads(path: Path) -> list[tuple[int, str, str]]:
    """(line, enclosing function, what) of each use of from_env and of os.environ/os.getenv."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str, str]] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else scope
            if isinstance(child, ast.Attribute) and child.attr == "from_env":  # a call or a reference
                found.append((child.lineno, scope, ast.unparse(child)))
            os_name = isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name)
            if os_name and child.value.id == "os" and child.attr in ("environ", "getenv"):
                found.append((child.lineno, scope, ast.unparse(child)))
            names = {alias.name for alias in child.names} if isinstance(child, ast.ImportFrom) else set()
            if names & {"environ", "getenv"} and child.module == "os":
                found.append((child.lineno, scope, "from os import environ/getenv"))
            visit(child, inner)

    visit(tree, "<module>")
    return found


def test_the_core_reads_no_environment_outside_its_entry_points():
    unexpected, allowed_seen = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(ENTRY_POINTS):
            continue
        for line, scope, what in _environment_reads(path):
            if (relative, scope) in ALLOWED:
                allowed_seen.add((relative, scope))
            else:
                unexpected.append(f"include/model_factory/{relative}:{line} ({scope}): {what}")
    assert not unexpected, (
        "the core library reads the environment; take the settings (or the value) from the caller "
        "and read FactorySettings.from_env() once at the entry point:\n  " + "\n  ".join(unexpected)
    )
    stale = sorted(set(ALLOWED) - allowed_seen)
    assert not stale, f"ALLOWED lists reads that are gone (remove them): {stale}"


def test_the_guard_sees_each_kind_of_read(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os\nfrom os import environ\nX = os.environ.get('A')\n"
        "def f():\n    return FactorySettings.from_env(), os.getenv('B')\n"
        "def g(read=FactorySettings.from_env):\n    pass\n"
    )
    assert [(line, scope) for line, scope, _ in _environment_reads(sample)] == [
        (2, "<module>"),
        (3, "<module>"),
        (5, "f"),
        (5, "f"),
        (6, "g"),
    ]
