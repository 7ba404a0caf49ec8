"""Virtualenvs of their own for the alternatives the bench compares against (under .factory/bench-venvs).

Evidently 0.7.23 needs pandas 2 (the project runs pandas 3), and ``mlflow models serve`` is run the
way a user would: from a fresh environment with the model's own requirements. Each environment is
created once with ``python -m venv`` and ``pip install`` from PyPI, and reused while its pinned
requirement list is unchanged (a marker file holds the list it was built from).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / ".factory" / "bench-venvs"
EVIDENTLY = ["evidently==0.7.23", "pandas>=2.2,<3", "pyarrow"]
# The serving peers: each beside the model's own pins (scikit-learn, numpy, pandas: the same pickle)
# uvloop before 0.22: MLServer 1.7.1's parallel workers call asyncio.get_event_loop() with no loop
MLSERVER = ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0"]
BENTOML = ["bentoml==1.4.40"]
LITSERVE = ["litserve==0.2.19"]


def python_of(name: str) -> Path:
    return VENVS / name / "bin" / "python"


def ensure(name: str, requirements: list[str], log=print) -> Path:
    """The venv's python, creating or refreshing the venv when its requirement list changed."""
    venv = VENVS / name
    marker = venv / "bench-requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if marker.is_file() and marker.read_text() == wanted and python_of(name).exists():
        return python_of(name)
    log(f"creating virtualenv {venv} ({len(requirements)} requirements from PyPI) ...")
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [str(python_of(name)), "-m", "pip", "install", "-q", *requirements],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"pip install into {venv} failed:\n{done.stderr[-3000:]}")
    marker.write_text(wanted)
    return python_of(name)


if __name__ == "__main__":
    print(ensure(sys.argv[1], sys.argv[2:]))
