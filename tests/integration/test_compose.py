"""Consistency checks for docker-compose.yaml, .env.example and docker/ -- no Docker needed.

The compose file cannot be run here, so these tests read it (and the files it refers to) as
data: services, pinned images, healthchecks, interpolated variables, mounts, dependencies,
ports, Airflow config names (against the installed Airflow's config.yml, without importing
Airflow), version pins against requirements.txt, and the factory's environment variables.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from functools import cache
from pathlib import Path

import pytest
import yaml
from model_factory.settings import FactorySettings, env_name

from tests.integration.conftest import mlflow_server_argv, until_mlflow_up

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
REQUIREMENTS = ROOT / "requirements.txt"
AIRFLOW_DOCKERFILE = ROOT / "docker" / "airflow.Dockerfile"
MLFLOW_DOCKERFILE = ROOT / "docker" / "mlflow.Dockerfile"
MINIO_INIT_SCRIPT = ROOT / "docker" / "minio-init.sh"
MINIO_POLICY = ROOT / "docker" / "minio-factory-policy.json"

AIRFLOW_COMMANDS = {
    "airflow-init": ["airflow", "db", "migrate"],
    "airflow-apiserver": ["airflow", "api-server"],
    "airflow-scheduler": ["airflow", "scheduler"],
    "airflow-dag-processor": ["airflow", "dag-processor"],
    "airflow-triggerer": ["airflow", "triggerer"],
    "airflow-worker": ["airflow", "celery", "worker"],
}
AIRFLOW_SERVICES = frozenset(AIRFLOW_COMMANDS)
GATEWAY = "model-gateway"
GATEWAY_COMMAND = ["python", "-m", "model_factory.serving", "--host", "0.0.0.0", "--port", "8000"]
EXPECTED_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "minio", "minio-init", "mlflow", GATEWAY}
# Services that run the project's code (the factory library from the ./include mount).
PROJECT_CODE_SERVICES = AIRFLOW_SERVICES | {GATEWAY}
# Jobs that run to completion; everything else is long-running.
ONE_SHOT_SERVICES = frozenset({"airflow-init", "minio-init"})

# Environment variables the factory code (include/model_factory) and its clients read.
REQUIRED_FACTORY_ENV = frozenset(
    {
        "FACTORY_HOME",
        "FACTORY_STORE_URI",
        "FACTORY_DATA_ROOT",
        "FACTORY_SPECS_DIR",
        "MLFLOW_TRACKING_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    }
)
FACTORY_ENV_PREFIXES = ("FACTORY_", "MLFLOW_", "AWS_")
# Set for the Airflow services beyond the required ones: read by the factory (the gateway's
# prediction log, which the drift/canary DAGs read) or by the MLflow client.
OPTIONAL_FACTORY_ENV = frozenset(
    {
        "FACTORY_PREDICTION_DB_URI",
        "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    }
)
# Every FACTORY_* variable the factory reads: the fields of its one settings object.
SETTINGS_ENV = frozenset(env_name(name) for name in FactorySettings.model_fields)
# Read by MLflow or boto3 themselves, not by the factory's code.
CLIENT_ENV = frozenset(
    {
        "MLFLOW_TRACKING_URI",
        "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD",
        "MLFLOW_S3_ENDPOINT_URL",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_AUTH_CONFIG_PATH",
        "MLFLOW_AUTH_ADMIN_USERNAME",
        "MLFLOW_AUTH_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SERVER_SECRET_KEY",
    }
)
INCLUDE = ROOT / "include"

AIRFLOW_MOUNTS = {
    "./dags": "/opt/airflow/dags",
    "./plugins": "/opt/airflow/plugins",
    "./include": "/opt/airflow/include",
}

# Config sections owned by providers rather than airflow-core's config.yml. The celery provider is
# in the apache/airflow image but not in requirements.txt (so not in the test venv); when it is not
# installed, its options are checked against this copy of providers/celery/provider.yaml
# (apache-airflow-providers-celery 3.17.x).
PROVIDER_CONFIG_FALLBACK = {
    "celery": {
        "celery_app_name",
        "worker_concurrency",
        "worker_autoscale",
        "worker_prefetch_multiplier",
        "worker_enable_remote_control",
        "broker_url",
        "result_backend",
        "result_backend_sqlalchemy_engine_options",
        "flower_host",
        "flower_url_prefix",
        "flower_port",
        "flower_basic_auth",
        "sync_parallelism",
        "celery_config_options",
        "ssl_active",
        "ssl_key",
        "ssl_cert",
        "ssl_cacert",
        "pool",
        "operation_timeout",
        "task_acks_late",
        "task_track_started",
        "task_publish_max_retries",
        "extra_celery_config",
        "worker_umask",
    },
    "celery_kubernetes_executor": {"kubernetes_queue"},
    "celery_broker_transport_options": {"visibility_timeout", "sentinel_kwargs"},
    "celery_result_backend_transport_options": {"master_name", "sentinel_kwargs"},
}
PROVIDER_OF_SECTION = {section: "celery" for section in PROVIDER_CONFIG_FALLBACK}

# .env variables holding secrets: their example value must be a placeholder.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|API_KEY")
# Container environment entries holding secrets: their value must come from .env.
SECRET_ENV_KEY = re.compile(r"(PASSWORD|SECRET|SECRET_KEY|SECRET_ACCESS_KEY|FERNET_KEY|AUTH|API_KEY)$")
PLACEHOLDER = "CHANGE_ME"

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_INTERPOLATION = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)([:?+-]*)|([A-Za-z_][A-Za-z0-9_]*))")
_SERVICE_URL = re.compile(
    r"\b(?:https?|redis|postgresql(?:\+\w+)?|db\+postgresql)://(?:[^@/\s]*@)?([A-Za-z0-9_.-]+)"
)


# ----------------------------------------------------------------------------- helpers


@cache
def compose() -> dict:
    return yaml.load(COMPOSE_FILE.read_text(), Loader=_LOADER)


def services() -> dict[str, dict]:
    return compose()["services"]


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def strings_in(node) -> list[str]:
    """Every scalar value (not key) in a YAML tree: what compose interpolates."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings_in(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return [node] if isinstance(node, str) else []


def interpolations(text: str) -> list[tuple[str, str]]:
    """(variable, operator) for each ${VAR...} / $VAR in text; $$ is a literal dollar."""
    found = []
    for match in _INTERPOLATION.finditer(text.replace("$$", "")):
        braced, operator, bare = match.groups()
        found.append((braced or bare, operator or ""))
    return found


@cache
def env_example() -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), (
            f".env.example line {number} is not NAME=value: {line!r}"
        )
        assert name not in entries, f".env.example defines {name} twice"
        entries[name] = value
    return entries


def volume_pairs(service: dict) -> list[tuple[str, str]]:
    pairs = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            pairs.append((str(volume.get("source", "")), str(volume["target"])))
        else:
            source, _, rest = volume.partition(":")
            pairs.append((source, rest.split(":")[0]) if rest else ("", source))
    return pairs


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def host_ports(service: dict) -> list[tuple[str, str, str]]:
    """(host ip, host port, protocol) of each published port."""
    published = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            if port.get("published"):
                published.append(
                    (port.get("host_ip", ""), str(port["published"]), port.get("protocol", "tcp"))
                )
            continue
        spec, _, protocol = str(port).partition("/")
        parts = spec.rsplit(":", 2)
        if len(parts) == 1:
            continue  # container port only, nothing published on the host
        host_ip = parts[0] if len(parts) == 3 else ""
        published.append((host_ip, parts[-2], protocol or "tcp"))
    return published


def image_tag(reference: str) -> str | None:
    if "@sha256:" in reference:
        return reference.split("@", 1)[1]
    last = reference.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def is_pinned(reference: str) -> bool:
    tag = image_tag(reference)
    return (
        tag is not None and tag != "latest" and "$" not in reference and any(char.isdigit() for char in tag)
    )


def from_images(dockerfile: Path) -> list[str]:
    """Base images of every FROM line, leaving out references to earlier build stages."""
    images, stages = [], set()
    for line in dockerfile.read_text().splitlines():
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        args = [word for word in words[1:] if not word.startswith("--")]
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2])
        if args[0] not in stages and args[0] != "scratch":
            images.append(args[0])
    return images


def dockerfile_of(service: dict) -> Path:
    build = service["build"]
    if isinstance(build, str):
        return ROOT / build / "Dockerfile"
    return ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")


@cache
def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.-]+)==([^\s;#]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return pins


def airflow_package_dirs() -> list[Path]:
    # find_spec on a top-level name locates the package without importing it.
    spec = importlib.util.find_spec("airflow")
    assert spec is not None, "apache-airflow is not installed in this environment"
    return [Path(location) for location in spec.submodule_search_locations or []]


@cache
def airflow_config_options() -> dict[str, set[str]]:
    """section -> options, from airflow-core's config.yml plus providers (see FALLBACK)."""
    core = next(
        (
            path / "config_templates" / "config.yml"
            for path in airflow_package_dirs()
            if (path / "config_templates" / "config.yml").is_file()
        ),
        None,
    )
    assert core is not None, "config_templates/config.yml not found in the airflow package"
    options = {
        section: set((body or {}).get("options") or {})
        for section, body in yaml.load(core.read_text(), Loader=_LOADER).items()
    }
    for section, fallback in PROVIDER_CONFIG_FALLBACK.items():
        provider = PROVIDER_OF_SECTION[section]
        installed = provider_config(provider)
        options.setdefault(section, set()).update(installed.get(section, fallback) if installed else fallback)
    return options


@cache
def provider_config(provider: str) -> dict[str, set[str]] | None:
    """The config sections of an installed provider, read from its get_provider_info.py."""
    for path in airflow_package_dirs():
        info_file = path / "providers" / provider / "get_provider_info.py"
        if not info_file.is_file():
            continue
        for node in ast.walk(ast.parse(info_file.read_text())):
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Dict):
                info = ast.literal_eval(node.value)
                return {
                    section: set(body.get("options", {})) for section, body in info.get("config", {}).items()
                }
    return None


# ----------------------------------------------------------------------------- tests


def test_expected_services_exist():  # (a)
    assert set(services()) == EXPECTED_SERVICES
    for name, command in AIRFLOW_COMMANDS.items():
        assert services()[name].get("command") == command, f"{name}: command"
    assert env_of(services()["airflow-worker"])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_images_are_pinned_or_built_from_pinned_dockerfiles():  # (b)
    problems = []
    for name, service in services().items():
        image = service.get("image")
        if "build" in service:
            dockerfile = dockerfile_of(service)
            if not dockerfile.is_file():
                problems.append(f"{name}: {dockerfile.relative_to(ROOT)} does not exist")
                continue
            bases = from_images(dockerfile)
            if not bases:
                problems.append(f"{name}: no FROM line in {dockerfile.name}")
            problems += [
                f"{name}: {dockerfile.name} has unpinned FROM {base}" for base in bases if not is_pinned(base)
            ]
            if image is not None and not is_pinned(image):
                problems.append(f"{name}: built image tagged {image!r} (use a version tag)")
        elif image is None:
            problems.append(f"{name}: neither image nor build")
        elif not is_pinned(image):
            problems.append(f"{name}: image {image!r} is not pinned to a version tag")
    assert not problems, "\n".join(problems)


def test_long_running_services_have_healthchecks_and_restart_policies():  # (c)
    one_shot = {
        target
        for service in services().values()
        for target, condition in depends_on(service).items()
        if condition == "service_completed_successfully"
    }
    assert one_shot == ONE_SHOT_SERVICES
    problems = []
    for name, service in services().items():
        restart = service.get("restart")
        if name in ONE_SHOT_SERVICES:
            # unquoted `no` is YAML's False, not the string compose expects
            if restart not in (None, "no"):
                problems.append(f'{name}: one-shot job with restart {restart!r} (use "no")')
            continue
        healthcheck = service.get("healthcheck") or {}
        if not healthcheck.get("test") or healthcheck.get("disable"):
            problems.append(f"{name}: long-running service without a healthcheck")
        if restart not in ("always", "unless-stopped"):
            problems.append(f"{name}: restart is {restart!r}, want always/unless-stopped")
    assert not problems, "\n".join(problems)


def test_interpolated_variables_match_env_example():  # (d)
    used = {name for text in strings_in(compose()) for name, _ in interpolations(text)}
    defined = set(env_example())
    assert not used - defined, f"used in compose, missing from .env.example: {used - defined}"
    assert not defined - used, f"in .env.example but unused by compose: {defined - used}"


def test_secrets_come_only_from_env_file():  # (d) and "secrets only from .env"
    problems = []
    for name, value in env_example().items():
        if SECRET_NAME.search(name) and value != PLACEHOLDER:
            problems.append(f".env.example: {name} must be the placeholder {PLACEHOLDER}")
    for text in strings_in(compose()):
        for name, operator in interpolations(text):
            if SECRET_NAME.search(name) and operator != ":?":
                problems.append(f"compose: use ${{{name}:?...}} (required, no default)")
        for password in re.findall(r"://[^:/@\s]*:([^@\s]*)@", text):
            if not password.startswith("${"):
                problems.append(f"compose: literal password in URL {text!r}")
    for service_name, service in services().items():
        for key, value in env_of(service).items():
            if SECRET_ENV_KEY.search(key) and not interpolations(value):
                problems.append(f"{service_name}: {key} is a literal, not from .env")
    assert not problems, "\n".join(sorted(set(problems)))


def test_project_dirs_are_mounted_into_airflow_services():  # (e)
    problems = []
    for name in sorted(AIRFLOW_SERVICES):
        pairs = set(volume_pairs(services()[name]))
        problems += [
            f"{name}: {source} not mounted at {target}"
            for source, target in AIRFLOW_MOUNTS.items()
            if (source, target) not in pairs
        ]
        if "PYTHONPATH" in env_of(services()[name]):
            problems.append(f"{name}: sets PYTHONPATH; the image installs the factory package")
    for name, service in services().items():
        problems += [
            f"{name}: bind-mount source {source} does not exist"
            for source, _ in volume_pairs(service)
            if source.startswith((".", "/")) and not (ROOT / source).exists()
        ]
    problems += [f"host dir {s} missing" for s in AIRFLOW_MOUNTS if not (ROOT / s).is_dir()]
    named = {s for service in services().values() for s, _ in volume_pairs(service)}
    named = {s for s in named if s and not s.startswith((".", "/", "~"))}
    problems += [f"named volume {v} not declared" for v in named - set(compose()["volumes"])]
    assert not problems, "\n".join(problems)


def test_depends_on_targets_exist_with_matching_conditions():  # (f)
    problems = []
    for name, service in services().items():
        for target, condition in depends_on(service).items():
            if target not in services():
                problems.append(f"{name} depends on unknown service {target}")
            elif target == name:
                problems.append(f"{name} depends on itself")
            elif condition == "service_healthy" and not services()[target].get("healthcheck"):
                problems.append(f"{name} waits for {target} to be healthy; it has no healthcheck")
            elif condition == "service_completed_successfully" and target not in ONE_SHOT_SERVICES:
                problems.append(f"{name} waits for long-running {target} to complete")
    assert not problems, "\n".join(problems)


def test_host_ports_are_unique():  # (g)
    seen: dict[tuple[str, str], str] = {}
    problems = []
    for name, service in services().items():
        for _host_ip, port, protocol in host_ports(service):
            key = (port, protocol)
            if key in seen:
                problems.append(f"host port {port}/{protocol}: {seen[key]} and {name}")
            seen[key] = name
    assert not problems, "\n".join(problems)
    assert seen.get(("8080", "tcp")) == "airflow-apiserver"
    assert seen.get(("5000", "tcp")) == "mlflow"
    assert seen.get(("9001", "tcp")) == "minio"


def test_airflow_config_env_vars_exist_in_installed_airflow():  # (h)
    options = airflow_config_options()
    problems = []
    for name, service in services().items():
        for key in env_of(service):
            if not key.startswith("AIRFLOW__"):
                continue
            parts = key.split("__")
            if len(parts) != 3:
                problems.append(f"{name}: {key} is not AIRFLOW__SECTION__OPTION")
                continue
            section, option = parts[1].lower(), parts[2].lower()
            base = re.sub(r"_(cmd|secret)$", "", option)  # AIRFLOW__X__Y_CMD / _SECRET variants
            if section not in options:
                problems.append(f"{name}: {key}: no section [{section}]")
            elif option not in options[section] and base not in options[section]:
                problems.append(f"{name}: {key}: no option {option} in [{section}]")
    assert not problems, "\n".join(sorted(set(problems)))


def test_urls_point_at_compose_services():
    known = set(services()) | {"localhost", "127.0.0.1", "0.0.0.0"}
    problems = [
        f"{name}: {text!r} points at unknown host {host}"
        for name, service in services().items()
        for text in strings_in(service)
        for host in _SERVICE_URL.findall(re.sub(r"\$\{[^}]*\}", "x", text.replace("$$", "")))
        if host not in known
    ]
    assert not problems, "\n".join(problems)


def test_buckets_in_uris_are_created_and_allowed():
    uris = [text for text in strings_in(compose()) if text.startswith("s3://")]
    used = {re.match(r"s3://([^/]+)", uri)[1] for uri in uris}
    assert {"factory", "mlflow"} <= used
    created = re.search(r'^BUCKETS="([^"]*)"', MINIO_INIT_SCRIPT.read_text(), re.MULTILINE)
    assert created, 'docker/minio-init.sh: no BUCKETS="..." line'
    assert used <= set(created[1].split()), f"buckets not created by minio-init: {used}"
    resources = {
        resource
        for statement in json.loads(MINIO_POLICY.read_text())["Statement"]
        for resource in statement["Resource"]
    }
    for bucket in used:
        assert {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"} <= resources, bucket


def test_dockerfile_versions_match_requirements():  # (i)
    pins = requirement_pins()
    compiled_for = re.search(r"--python-version\s+(\d+\.\d+)", REQUIREMENTS.read_text())
    assert compiled_for, "requirements.txt header does not name its --python-version"

    (airflow_base,) = from_images(AIRFLOW_DOCKERFILE)
    match = re.fullmatch(r"apache/airflow:(\d+\.\d+\.\d+)-python(\d+\.\d+)", airflow_base)
    assert match, f"unexpected Airflow base image {airflow_base}"
    assert match[1] == pins["apache-airflow"], "Airflow base image vs requirements.txt"
    assert match[2] == compiled_for[1], "Airflow base image Python vs requirements.txt"

    mlflow_text = MLFLOW_DOCKERFILE.read_text()
    for package in ("mlflow", "boto3"):
        pinned = re.findall(rf"(?<![\w-]){package}==([^\s\\]+)", mlflow_text)
        assert pinned == [pins[package]], f"{package} in mlflow.Dockerfile vs requirements.txt"
    (mlflow_base,) = from_images(MLFLOW_DOCKERFILE)
    assert mlflow_base.startswith(f"python:{compiled_for[1]}."), mlflow_base

    built = {name: s for name, s in services().items() if "build" in s}
    versions = {AIRFLOW_DOCKERFILE: pins["apache-airflow"], MLFLOW_DOCKERFILE: pins["mlflow"]}
    for name, service in built.items():
        expected = versions[dockerfile_of(service).resolve()]
        assert image_tag(service.get("image", "")) == expected, f"{name}: image tag"


def test_factory_env_is_set_for_airflow_services():  # (j)
    problems = []
    for name in sorted(AIRFLOW_SERVICES):
        env = env_of(services()[name])
        factory_names = {key for key in env if key.startswith(FACTORY_ENV_PREFIXES)}
        problems += [
            f"{name}: sets {key}, which the factory does not read"
            for key in sorted(factory_names - REQUIRED_FACTORY_ENV - OPTIONAL_FACTORY_ENV - SETTINGS_ENV)
        ]
        problems += [f"{name}: {key} not set" for key in sorted(REQUIRED_FACTORY_ENV) if not env.get(key)]
        specs_dir = env.get("FACTORY_SPECS_DIR", "")
        if not specs_dir.startswith(AIRFLOW_MOUNTS["./include"] + "/"):
            problems.append(f"{name}: FACTORY_SPECS_DIR {specs_dir!r} is outside ./include")
    assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------- project code, gateway


@cache
def names_read_by_the_code() -> set[str]:
    """FACTORY_*/MLFLOW_*/AWS_* names that appear as string literals in include/ (what it reads)."""
    found: set[str] = set()
    for path in INCLUDE.rglob("*.py"):
        found.update(re.findall(r"[\"']((?:FACTORY|MLFLOW|AWS)_[A-Z0-9_]+)[\"']", path.read_text()))
    return found


def test_every_factory_variable_set_is_read_by_the_code():
    """A typo in a FACTORY_* name in the compose file would be silently ignored by the code."""
    problems = []
    for name in sorted(PROJECT_CODE_SERVICES):
        for key in env_of(services()[name]):
            if key.startswith("FACTORY_") and key not in names_read_by_the_code():
                problems.append(f"{name}: {key} is read nowhere in include/")
            if key.startswith("MLFLOW_") and key not in CLIENT_ENV | names_read_by_the_code():
                problems.append(f"{name}: {key} is not a variable the MLflow client or the code reads")
    assert not problems, "\n".join(problems)


def test_gateway_runs_the_serving_module_on_the_project_image():
    gateway = services()[GATEWAY]
    assert gateway["command"] == GATEWAY_COMMAND
    assert gateway["image"] == services()["airflow-worker"]["image"]
    assert dockerfile_of(gateway) == dockerfile_of(services()["airflow-worker"])
    assert ("./include", "/opt/airflow/include") in set(volume_pairs(gateway))
    assert "PYTHONPATH" not in env_of(gateway)
    assert (INCLUDE / "model_factory" / "serving" / "__main__.py").is_file() or (
        INCLUDE / "model_factory" / "serving.py"
    ).is_file(), "python -m model_factory.serving has no module to run"
    assert ("${BIND_ADDRESS:-127.0.0.1}", "8000", "tcp") in host_ports(gateway)
    assert {"postgres", "mlflow"} <= set(depends_on(gateway))


def test_gateway_and_dags_share_the_registry_and_the_prediction_log():
    """The gateway writes predictions the drift/canary DAGs read, and serves what they register."""
    gateway, worker = env_of(services()[GATEWAY]), env_of(services()["airflow-worker"])
    for key in ("MLFLOW_TRACKING_URI", "FACTORY_PREDICTION_DB_URI", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD"):
        assert gateway.get(key) and gateway.get(key) == worker.get(key), key
    database = re.search(r"@postgres:5432/(\w+)$", gateway["FACTORY_PREDICTION_DB_URI"])
    assert database, gateway["FACTORY_PREDICTION_DB_URI"]
    created = " ".join(p.read_text() for p in (ROOT / "docker" / "postgres-init").glob("*"))
    assert re.search(rf"CREATE DATABASE {database[1]}\b", created), f"no init script creates {database[1]}"
    assert env_of(services()[GATEWAY])["FACTORY_GATEWAY_API_KEY"].startswith("${FACTORY_GATEWAY_API_KEY:?")


def test_celery_workers_start_their_tasks_warm():
    """Every Airflow service reads the same Celery config: Airflow's defaults plus the receiver
    that imports the tasks' libraries before a worker forks its pool."""
    from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
    from celery.signals import import_modules
    from model_factory.airflow import celery_config

    path = env_of(services()["airflow-worker"])["AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS"]
    module, _, name = path.rpartition(".")
    assert module == celery_config.__name__ and getattr(celery_config, name) is DEFAULT_CELERY_CONFIG
    assert any(ref() is celery_config.warm_worker for _, ref in import_modules.receivers)


def test_production_settings_for_worker_failures():
    """A lost worker's tasks are retried within minutes; long tasks are not redelivered early."""
    env = env_of(services()["airflow-worker"])
    assert int(env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]) <= 300
    assert int(env["AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT"]) >= 3600


def test_requirements_carry_what_the_celery_configuration_needs():
    pins = requirement_pins()
    for package in (
        "apache-airflow-providers-celery",
        "apache-airflow-providers-postgres",
        "apache-airflow-providers-redis",
        "celery",
        "redis",
        "psycopg2-binary",
    ):
        assert package in pins, f"{package} is not pinned in requirements.txt"
    # celery 5.7 removed celery.backends.database.retry, which the celery provider imports.
    assert pins["celery"].startswith("5.6."), pins["celery"]
    mlflow_text = MLFLOW_DOCKERFILE.read_text()
    assert re.findall(r"psycopg2-binary==([^\s\\]+)", mlflow_text) == [pins["psycopg2-binary"]]


def test_image_installs_the_factory_package_with_its_lineage():
    """No PYTHONPATH in the containers: the image pip-installs the package, and records the code
    revision (a build argument) and the locked requirements it was built from."""
    dockerfile = (ROOT / "docker" / "airflow.Dockerfile").read_text()
    assert "pip install --no-cache-dir --no-deps /opt/model-factory" in dockerfile
    assert "ENV FACTORY_CODE_REVISION=${FACTORY_CODE_REVISION}" in dockerfile
    assert "FACTORY_REQUIREMENTS_FILE=/requirements.txt" in dockerfile
    ignore = (ROOT / "docker" / "airflow.Dockerfile.dockerignore").read_text().split()
    for copied in ("!pyproject.toml", "!include/model_factory", "!include/model_factory_dev"):
        assert copied in ignore
    for name in sorted(AIRFLOW_SERVICES | {GATEWAY}):
        build = services()[name].get("build") or {}
        if build:
            assert "FACTORY_CODE_REVISION" in (build.get("args") or {}), name


# ----------------------------------------------------------------------------- issue 10: hardening

POSTGRES_INIT = ROOT / "docker" / "postgres-init" / "01-users-and-databases.sh"
MLFLOW_AUTH_INI = ROOT / "docker" / "mlflow-auth.ini"


def test_published_ports_listen_on_loopback_by_default():
    """Issue 10 item 10: nothing is published on every interface unless BIND_ADDRESS says so."""
    problems = []
    for name, service in services().items():
        for host_ip, port, _ in host_ports(service):
            if host_ip != "${BIND_ADDRESS:-127.0.0.1}":
                problems.append(f"{name}: port {port} published on {host_ip or 'all interfaces'}")
    assert not problems, "\n".join(problems)
    assert env_example()["BIND_ADDRESS"] == "127.0.0.1"


def test_mlflow_and_the_prediction_log_have_their_own_database_users():
    """Issue 10 item 10: neither MLflow nor the gateway holds the Postgres superuser's password."""
    superuser = "${POSTGRES_PASSWORD"
    mlflow_command = " ".join(services()["mlflow"]["command"])
    assert superuser not in mlflow_command
    assert "postgresql+psycopg2://mlflow:${MLFLOW_DB_PASSWORD" in mlflow_command
    for name in ("model-gateway", *sorted(AIRFLOW_SERVICES)):
        uri = env_of(services()[name]).get("FACTORY_PREDICTION_DB_URI", "")
        assert uri.startswith("postgresql+psycopg2://predictions:${PREDICTIONS_DB_PASSWORD"), (name, uri)
    gateway_env = " ".join(f"{k}={v}" for k, v in env_of(services()["model-gateway"]).items())
    assert superuser not in gateway_env
    postgres_env = env_of(services()["postgres"])
    assert {"MLFLOW_DB_PASSWORD", "PREDICTIONS_DB_PASSWORD"} <= set(postgres_env)


def test_mlflow_runs_behind_basic_auth_and_the_factory_logs_in():
    command = services()["mlflow"]["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = env_of(services()["mlflow"])
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == "/etc/mlflow/basic_auth.ini"
    for key in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):
        assert env[key].startswith("${"), key  # from .env, never written here
    assert "admin_password" not in MLFLOW_AUTH_INI.read_text().replace("# ", "")
    for name in ("model-gateway", *sorted(AIRFLOW_SERVICES)):
        client_env = env_of(services()[name])
        assert client_env.get("MLFLOW_TRACKING_USERNAME"), name
        assert client_env.get("MLFLOW_TRACKING_PASSWORD"), name


def test_the_gateway_is_safe_by_default_in_compose():
    """Issue 10 item 8: a key is required (init-env.sh generates every CHANGE_ME), hashes are
    salted, rows expire."""
    env = env_of(services()["model-gateway"])
    assert env["FACTORY_GATEWAY_API_KEY"].startswith("${FACTORY_GATEWAY_API_KEY:?")
    assert env["FACTORY_GATEWAY_HASH_SALT"].startswith("${FACTORY_GATEWAY_HASH_SALT:?")
    assert env["FACTORY_SIGNING_KEY"] == env_of(services()["airflow-worker"])["FACTORY_SIGNING_KEY"]
    assert env["FACTORY_SIGNING_KEY"].startswith("${FACTORY_SIGNING_KEY:?")
    assert "FACTORY_GATEWAY_LOG_INPUTS" not in env  # opt-in only
    assert env["FACTORY_GATEWAY_RETENTION_DAYS"] and env["FACTORY_GATEWAY_THREADS"] == "1"
    example = env_example()
    for key in (
        "FACTORY_GATEWAY_API_KEY",
        "FACTORY_GATEWAY_HASH_SALT",
        "FACTORY_SIGNING_KEY",
        "MLFLOW_DB_PASSWORD",
        "PREDICTIONS_DB_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SECRET_KEY",
    ):
        assert example[key] == "CHANGE_ME", key


def test_airflow_users_have_roles_in_the_simple_auth_manager():
    env = env_of(services()["airflow-apiserver"])
    pairs = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    users = dict(pair.split(":") for pair in pairs)
    assert users == {"admin": "admin", "ops": "op", "viewer": "viewer"}


def test_init_env_generates_every_secret(tmp_path):
    import shutil
    import subprocess

    (tmp_path / "docker").mkdir()
    shutil.copy(ROOT / "docker" / "init-env.sh", tmp_path / "docker")
    shutil.copy(ENV_EXAMPLE, tmp_path)
    subprocess.run(["sh", str(tmp_path / "docker" / "init-env.sh")], check=True, capture_output=True)
    lines = (tmp_path / ".env").read_text().splitlines()
    written = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert "CHANGE_ME" not in written.values()
    assert len(written["FACTORY_GATEWAY_API_KEY"]) == 48 and written["BIND_ADDRESS"] == "127.0.0.1"


def _throwaway_postgres(folder: Path):
    """A fresh PostgreSQL cluster (initdb as the postgres user) on a unix socket in ``folder``."""
    import shutil
    import subprocess

    runuser, initdb = shutil.which("runuser"), shutil.which("initdb")
    if not (runuser and initdb and Path("/usr/lib/postgresql").exists()):
        pytest.skip("needs PostgreSQL's initdb and runuser")
    folder.chmod(0o777)
    data = folder / "data"

    def as_postgres(*args: str) -> subprocess.CompletedProcess:
        command = [runuser, "-u", "postgres", "--", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    done = as_postgres(initdb, "-D", str(data), "-U", "postgres", "--auth=trust")
    assert done.returncode == 0, done.stderr
    started = as_postgres(  # -l: the server must not hold our pipes open
        "pg_ctl",
        "-D",
        str(data),
        "-w",
        "-l",
        str(folder / "log"),
        "-o",
        f"-k {folder} -c listen_addresses='' -p 5432",
        "start",
    )
    assert started.returncode == 0, started.stderr
    return data, as_postgres


def test_postgres_init_creates_least_privilege_users():
    """docker/postgres-init run for real on a throwaway cluster: each user reaches only its own
    database, and none of them the Airflow metadata database."""
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="pg-init-"))  # pytest's tmp_path is private to root
    try:
        _check_postgres_init(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _check_postgres_init(tmp_path: Path) -> None:
    import subprocess

    data, as_postgres = _throwaway_postgres(tmp_path)
    socket_dir = str(tmp_path)
    try:
        assert as_postgres("createdb", "-h", socket_dir, "-U", "postgres", "airflow").returncode == 0
        env = {
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "PGHOST": socket_dir,
            "POSTGRES_USER": "postgres",
            "POSTGRES_DB": "airflow",
            "MLFLOW_DB_PASSWORD": "m-pass",
            "PREDICTIONS_DB_PASSWORD": "p-pass",
        }
        script = tmp_path / "init.sh"
        script.write_text(POSTGRES_INIT.read_text())
        script.chmod(0o755)
        ran = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "env",
                *[f"{k}={v}" for k, v in env.items()],
                "sh",
                str(script),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert ran.returncode == 0, ran.stderr

        def psql(user: str, db: str, sql: str) -> subprocess.CompletedProcess:
            return as_postgres(
                "psql", "-h", socket_dir, "-U", user, "-d", db, "-v", "ON_ERROR_STOP=1", "-c", sql
            )

        owned = psql("predictions", "predictions", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        assert owned.returncode == 0, owned.stderr
        assert psql("mlflow", "mlflow", "CREATE TABLE t (x int)").returncode == 0
        for user, db in (
            ("predictions", "airflow"),
            ("predictions", "mlflow"),
            ("mlflow", "airflow"),
            ("mlflow", "predictions"),
        ):
            denied = psql(user, db, "SELECT 1")
            assert denied.returncode != 0 and "permission denied" in denied.stderr, (user, db)
        assert psql("predictions", "predictions", "CREATE ROLE sneaky").returncode != 0
    finally:
        as_postgres("pg_ctl", "-D", str(data), "-m", "immediate", "stop")


def test_mlflow_basic_auth_config_serves_only_signed_in_clients(tmp_path):
    """The compose's MLflow command and docker/mlflow-auth.ini, run for real (SQLite instead of
    Postgres): anonymous calls get 401, the factory's client signs in with the admin user."""
    import os
    import subprocess
    import sys

    import httpx
    from model_factory_dev.stack import free_port

    ini = tmp_path / "basic_auth.ini"
    ini.write_text(MLFLOW_AUTH_INI.read_text().replace("/var/lib/mlflow-auth", str(tmp_path)))
    command = services()["mlflow"]["command"]
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_AUTH_ADMIN_USERNAME": "factory-admin",
        "MLFLOW_AUTH_ADMIN_PASSWORD": "pw-for-the-test",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
    }
    app_name = command[command.index("--app-name") + 1]
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    server = subprocess.Popen(
        mlflow_server_argv(port, "--app-name", app_name, "--backend-store-uri", store),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        until_mlflow_up(base, server, timeout_s=400)  # a busy 2-core machine imports MLflow slowly
        search = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        assert httpx.get(search, timeout=10).status_code == 401
        assert httpx.get(search, auth=("factory-admin", "wrong"), timeout=10).status_code == 401
        signed_in = subprocess.run(
            [sys.executable, "-c", "import mlflow; print(mlflow.MlflowClient().create_experiment('e'))"],
            env={
                **os.environ,
                "MLFLOW_TRACKING_URI": base,
                "MLFLOW_TRACKING_USERNAME": "factory-admin",
                "MLFLOW_TRACKING_PASSWORD": "pw-for-the-test",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert signed_in.returncode == 0, signed_in.stderr[-2000:]
    finally:
        import signal

        os.killpg(server.pid, signal.SIGTERM)  # the server and its workers: our own process group
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
