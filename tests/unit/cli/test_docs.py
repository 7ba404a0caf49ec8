"""The docs site and the settings it documents: generated pages up to date, every FACTORY_*
variable read through FactorySettings, every imported package declared, the site built strictly."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from model_factory.cli import docs_gen
from model_factory.cli.main import app
from model_factory.settings import PROJECT_ROOT, FactorySettings, FactorySettingsError, env_name
from typer.testing import CliRunner

ROOT = PROJECT_ROOT
PRODUCT = ROOT / "include" / "model_factory"


def test_generated_pages_and_env_example_match_the_code():
    assert docs_gen.stale() == [], "run `make docs` (python -m model_factory.cli.docs_gen)"


def test_configuration_table_lists_every_setting_and_no_secret_default():
    table = (ROOT / "docs" / "generated" / "configuration_table.md").read_text()
    for name in FactorySettings.model_fields:
        assert f"`{env_name(name)}`" in table
    assert "CHANGE_ME" not in docs_gen.env_block()


def test_no_module_reads_a_factory_variable_but_the_settings():
    offenders = []
    for path in PRODUCT.rglob("*.py"):
        if path == PRODUCT / "settings.py":
            continue
        text = path.read_text()
        # Read by name, or through a constant holding the name (KEY_ENV = "FACTORY_SIGNING_KEY").
        names = ["[\"']FACTORY_", *re.findall(r"^(\w+) = [\"']FACTORY_", text, flags=re.M)]
        raw_read = re.compile(rf"(environ(\.get)?\s*[\[(]|getenv\()\s*({'|'.join(names)})")
        offenders += [
            f"{path.relative_to(ROOT)}:{number}"
            for number, line in enumerate(text.splitlines(), 1)
            if raw_read.search(line)
        ]
    assert offenders == []


def test_every_factory_variable_the_code_names_is_a_setting():
    declared = {env_name(name) for name in FactorySettings.model_fields}
    named: dict[str, str] = {}
    for path in (ROOT / "include").rglob("*.py"):
        for match in re.finditer(r"\bFACTORY_[A-Z][A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
            named.setdefault(match.group(0), str(path.relative_to(ROOT)))
    for constant in ("FACTORY_PATTERN", "FACTORY_CHECK_KINDS"):  # Python constants, not variables
        named.pop(constant, None)
    assert {name: where for name, where in named.items() if name not in declared} == {}


def test_a_bad_value_names_its_variable_and_secrets_stay_out_of_the_repr(monkeypatch):
    monkeypatch.setenv("FACTORY_GATEWAY_API_KEY", "s3cret-key")
    monkeypatch.setenv("FACTORY_CHUNK_ROWS", "12")
    settings = FactorySettings.from_env()
    assert settings.chunk_rows == 12 and settings.gateway_api_key == "s3cret-key"
    assert "s3cret-key" not in repr(settings) and "s3cret-key" not in str(settings)
    monkeypatch.setenv("FACTORY_CHUNK_ROWS", "many")
    with pytest.raises(FactorySettingsError, match=r"FACTORY_CHUNK_ROWS='many'"):
        FactorySettings.from_env()
    monkeypatch.setenv("FACTORY_CHUNK_ROWS", "0")
    with pytest.raises(FactorySettingsError, match="FACTORY_CHUNK_ROWS"):
        FactorySettings.from_env()


def test_settings_follow_the_environment_as_it_changes(monkeypatch, tmp_path):
    monkeypatch.setenv("FACTORY_HOME", str(tmp_path))
    monkeypatch.delenv("FACTORY_STORE_URI", raising=False)
    assert FactorySettings.from_env().store_uri == (tmp_path / "store").as_uri()
    monkeypatch.setenv("FACTORY_STORE_URI", "s3://bucket/store")
    assert FactorySettings.from_env().store_uri == "s3://bucket/store"


def test_shipped_specs_pass_the_published_schema_and_validate_prints_it():
    published = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    printed = CliRunner().invoke(app, ["validate", "--schema"])
    assert printed.exit_code == 0 and json.loads(printed.stdout) == published
    specs = sorted((ROOT / "include" / "models").glob("*.yaml"))
    assert specs
    for path in [*specs, ROOT / "include" / "templates" / "model.yaml"]:
        jsonschema.validate(yaml.safe_load(path.read_text()), published)
    with pytest.raises(jsonschema.ValidationError, match="estimatr"):
        broken = {**yaml.safe_load(specs[0].read_text()), "estimatr": {}}
        jsonschema.validate(broken, published)


def test_every_imported_package_is_declared():
    deptry = shutil.which("deptry", path=str(Path(sys.executable).parent))
    assert deptry, "deptry is in requirements-dev.txt"
    done = subprocess.run([deptry, "include"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned_in = {
        re.split(r"[<>=\[ ;]", line.strip())[0].lower()
        for line in (ROOT / "requirements.in").read_text().splitlines()
        if line.strip() and not line.startswith(("#", "-"))
    }
    missing = {re.split(r"[<>=\[ ;]", dep)[0].lower() for dep in declared} - pinned_in
    assert missing == set(), f"in pyproject.toml but not requirements.in: {missing}"


def _mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of the site in ``project`` into ``site``."""
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    assert mkdocs, "mkdocs-material is in requirements-dev.txt"
    return subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )


def test_the_site_builds_strictly_and_a_broken_link_fails_it(tmp_path):
    built = _mkdocs_build(ROOT, tmp_path / "site")
    assert built.returncode == 0, built.stderr[-3000:]
    # The performance page includes bench/results/latest.md rather than a copy of it.
    latest = (ROOT / "bench" / "results" / "latest.md").read_text().splitlines()[2].split("|")[2].strip()
    assert latest in (tmp_path / "site" / "performance" / "index.html").read_text()
    assert latest not in (ROOT / "docs" / "performance.md").read_text()
    # The same build over a copy of the docs with one stale link fails.
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "docs", copy / "docs")
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    shutil.copy(ROOT / "README.md", copy / "README.md")
    shutil.copytree(ROOT / "bench" / "results", copy / "bench" / "results")
    with (copy / "docs" / "ops.md").open("a") as page:
        page.write("\nSee [the old section](how_it_works.md#no-such-section).\n")
    broken = _mkdocs_build(copy, tmp_path / "site2")
    assert broken.returncode == 1 and "no-such-section" in broken.stderr


def test_readme_is_short_and_states_no_measured_figure():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    # Figures live on their pages (performance, getting started), never repeated in the README.
    assert not re.search(r"\d+(\.\d+)? ?(req/s|ms|MiB|GB|s\b)|\d+m\d+s", readme)


def test_the_wheel_leaves_the_harness_out_and_the_cli_says_where_the_demo_is(monkeypatch):
    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert not any(pattern.startswith("model_factory_dev") for pattern in found["include"])
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "model_factory_dev" else real(name, *a)
    )
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1 and "make demo" in result.stderr


def test_shell_completion_is_on():
    """The installed command in its own process. With shellingham installed, Typer makes
    ``--show-completion`` a flag and detects the shell from the parent processes, which fails
    where there is none to find (CI, a detached run); Typer's own switch makes it take the shell
    as its value, as a user typing ``--show-completion bash`` intends."""
    cli = Path(sys.executable).parent / "model-factory"
    env = {**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    shown = subprocess.run(
        [str(cli), "--show-completion", "bash"], capture_output=True, text=True, timeout=120, env=env
    )
    assert shown.returncode == 0, shown.stderr
    assert "complete -o default -F _model_factory_completion model-factory" in shown.stdout


def test_ops_decision_reads_as_one_line():
    from model_factory.cli.common import decision_line

    decision = {
        "model": "churn",
        "version": "2",
        "action": "promoted",
        "actor": "ana via cli",
        "reason": "looked good",
        "changed": True,
        "details": {"champion": "2", "previous_champion": "1"},
    }
    assert decision_line(decision) == (
        "churn v2 promoted by ana via cli: looked good (champion 2, previous_champion 1)"
    )
    assert decision_line({**decision, "changed": False}).endswith("(already so: nothing changed)")
