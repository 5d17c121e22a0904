"""Smoke test of theme {{THEME}}: a tiny fit tracked by MLflow into a throwaway file store."""

import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses a file store unless asked; a throwaway one here
with tempfile.TemporaryDirectory() as store:
    mlflow.set_tracking_uri(Path(store).as_uri())
    mlflow.set_experiment("smoke")  # a new file store has no default experiment
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = (X[:, 0] > 0).astype(int)
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", LogisticRegression().fit(X, y).score(X, y))
    logged = mlflow.get_run(run.info.run_id).data.metrics["accuracy"]
    assert logged > 0.9, logged
print(f"smoke {{THEME}}: ok (mlflow {mlflow.__version__}, scikit-learn {sklearn.__version__})")
