"""The served model as every peer of the bench loads it: the factory's own fitted pipeline, exported
with joblib by ``bench/serving_peers.py``, plus the column lists and classes beside it.

Runs inside each peer's own virtualenv (scikit-learn, pandas and numpy pinned to the factory's),
so it imports nothing from the factory. One row is prepared as ``features.prepare_features`` does
(numbers as float64, categories as text, missing as ``__missing__``) and scored with
``predict_proba``; the answer has the gateway's shape: ``prediction`` and ``probabilities``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

MISSING_CATEGORY = "__missing__"


class PeerModel:
    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        folder = Path(folder or os.environ["PEER_MODEL_DIR"])
        meta = json.loads((folder / "model.json").read_text())
        self.numeric: list[str] = meta["numeric"]
        self.categorical: list[str] = meta["categorical"]
        self.columns = [*self.numeric, *self.categorical]
        self.classes = meta["classes"]
        self.pipeline = joblib.load(folder / "model.joblib")

    def frame(self, rows: list[dict]) -> pd.DataFrame:
        raw = pd.DataFrame.from_records(rows, columns=self.columns)
        X = pd.DataFrame(index=raw.index)
        for col in self.numeric:
            X[col] = pd.to_numeric(raw[col], errors="coerce").astype("float64")
        for col in self.categorical:
            values = raw[col].astype("object")
            X[col] = values.where(values.notna(), MISSING_CATEGORY).astype(str).astype(object)
        return X

    def predict_one(self, row: dict) -> dict:
        proba = np.asarray(self.pipeline.predict_proba(self.frame([row])))[0]
        return {
            "prediction": self.classes[int(proba.argmax())],
            "probabilities": {str(c): float(p) for c, p in zip(self.classes, proba, strict=True)},
        }
