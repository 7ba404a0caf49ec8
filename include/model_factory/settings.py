"""Where the factory keeps its state, read from the environment.

The embedded default puts everything under ``<project>/.factory``; production points the same
names at S3 and an MLflow server (see docker-compose.yaml). These are the only environment
variables the factory itself reads; boto3 and MLflow read their own standard ones
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``MLFLOW_TRACKING_URI``...).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FactorySettings:
    home: Path
    store_uri: str
    data_root: str
    specs_dir: Path
    tracking_uri: str
    artifact_root: str

    @classmethod
    def from_env(cls) -> FactorySettings:
        home = Path(os.environ.get("FACTORY_HOME", PROJECT_ROOT / ".factory")).resolve()
        return cls(
            home=home,
            store_uri=os.environ.get("FACTORY_STORE_URI", (home / "store").as_uri()),
            data_root=os.environ.get("FACTORY_DATA_ROOT", (home / "source").as_uri()),
            specs_dir=Path(os.environ.get("FACTORY_SPECS_DIR", PROJECT_ROOT / "include" / "models")),
            tracking_uri=os.environ.get(
                "MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
            ),
            artifact_root=os.environ.get(
                "FACTORY_MLFLOW_ARTIFACT_ROOT", (home / "mlflow" / "artifacts").as_uri()
            ),
        )
