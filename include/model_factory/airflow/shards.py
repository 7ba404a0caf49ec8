"""Specs spread over several DAG files (shards) that Airflow's dag-processor parses in parallel.

Each ``dags/model_factory_shard_<i>_of_<n>.py`` builds the models whose spec file's stem hashes
(CRC-32, stable across processes and machines) to ``i`` modulo ``n``. So:

- no single parse holds every model: a parse costs about ``1/n`` of the fleet;
- a spec added, changed or removed changes only its own shard's DAGs;
- a shard whose parse fails (Airflow's import timeout, a bug) loses only its own models: the
  import error names its spec files;
- a model is in exactly one shard: every shard file computes the same assignment from the same
  folder listing. When the shard files of two generations lie side by side (``_of_4`` and
  ``_of_8`` during a change of ``n``), only the largest complete generation builds models; the
  others define nothing, so a spec never yields two DAGs with one id.

``python -m model_factory.airflow.shards DAGS_FOLDER N`` writes the ``N`` shard files (and
removes the other generations' files).
"""

from __future__ import annotations

import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

PATTERN = re.compile(r"^model_factory_shard_(\d+)_of_(\d+)\.py$")
SHARD_FILE = "model_factory_shard_{index}_of_{count}.py"
SHARD_SOURCE = '''"""Shard {index} of {count} of the factory's DAGs: the specs whose name hashes to {index}.

Written by ``python -m model_factory.airflow.shards``; see model_factory.airflow.shards.
"""

from airflow.sdk import get_parsing_context
from model_factory.airflow.shards import shard_dags

globals().update(shard_dags(__file__, get_parsing_context().dag_id))
'''
NAMED_IN_ERRORS = 40  # spec files listed in a failed shard's import error


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def holds(self, spec_path: Path) -> bool:
        return shard_of(spec_path, self.count) == self.index


def shard_of(spec_path: Path | str, count: int) -> int:
    """The shard of a spec file: by its stem (a model's name, and what ``invalid_spec__`` names)."""
    return zlib.crc32(Path(spec_path).stem.encode()) % count


def parse_name(path: Path | str) -> Shard | None:
    match = PATTERN.match(Path(path).name)
    if not match:
        return None
    index, count = int(match[1]), int(match[2])
    return Shard(index, count) if 0 <= index < count else None


def active_count(folder: Path) -> int | None:
    """The generation that builds models: the largest ``n`` whose ``n`` files are all present."""
    found: dict[int, set[int]] = {}
    for path in folder.iterdir():
        shard = parse_name(path)
        if shard is not None:
            found.setdefault(shard.count, set()).add(shard.index)
    complete = [count for count, indexes in found.items() if len(indexes) == count]
    return max(complete) if complete else None


def shard_dags(dag_file: str, parsing_dag_id: str | None = None) -> dict:
    """What one shard file defines: its models' DAGs (only those that can be ``parsing_dag_id``
    when a task's process parses it); nothing when it is not of the active generation."""
    from model_factory.airflow.build import build_all

    from airflow.sdk.exceptions import AirflowTaskTimeout

    path = Path(dag_file)
    shard = parse_name(path)
    if shard is None or active_count(path.parent) != shard.count:
        return {}
    try:
        return build_all(only_dag_id=parsing_dag_id, only_specs=shard.holds)
    except AirflowTaskTimeout as exc:
        raise AirflowTaskTimeout(f"{exc}; {_whose(shard)}") from exc
    except Exception as exc:
        raise ShardParseError(f"{type(exc).__name__}: {exc}; {_whose(shard)}") from exc


class ShardParseError(RuntimeError):
    """A shard file that could not be parsed, naming the specs whose DAGs it leaves missing."""


def _whose(shard: Shard) -> str:
    from model_factory.settings import FactorySettings

    names = sorted(p.name for p in FactorySettings.from_env().specs_dir.glob("*.yaml") if shard.holds(p))
    listed = ", ".join(names[:NAMED_IN_ERRORS]) + (
        f" and {len(names) - NAMED_IN_ERRORS} more" if len(names) > NAMED_IN_ERRORS else ""
    )
    return (
        f"shard {shard.index} of {shard.count}: the DAGs of its {len(names)} specs ({listed}) are "
        "missing until it parses; the other shards are not affected"
    )


def write_shard_files(folder: Path, count: int) -> list[Path]:
    """Write the ``count`` shard files into ``folder``, then remove other generations' files
    (in that order, so some generation is always complete)."""
    if count < 1:
        raise ValueError("at least one shard")
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        path = folder / SHARD_FILE.format(index=index, count=count)
        path.write_text(SHARD_SOURCE.format(index=index, count=count))
        written.append(path)
    for path in folder.iterdir():
        shard = parse_name(path)
        if shard is not None and shard.count != count:
            path.unlink()
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m model_factory.airflow.shards DAGS_FOLDER N")
    for written in write_shard_files(Path(sys.argv[1]), int(sys.argv[2])):
        print(written)
