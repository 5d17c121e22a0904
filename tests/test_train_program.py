"""The training program run directly as a process (no Docker): the SageMaker container contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib
import pandas as pd
import pytest
from conftest import REPO
from sklearn.model_selection import train_test_split

TRAIN = REPO / "training/train"


def sm_root(tmp_path: Path, frame: pd.DataFrame, seed: int, hyperparameters: dict | None) -> Path:
    root = tmp_path / "opt_ml"
    train, validation = train_test_split(frame, test_size=0.2, stratify=frame["Survived"], random_state=seed)
    for channel, part in (("train", train), ("validation", validation)):
        folder = root / "input/data" / channel
        folder.mkdir(parents=True)
        part.to_csv(folder / f"{channel}.csv", index=False)
    if hyperparameters is not None:
        (root / "input/config").mkdir(parents=True)
        (root / "input/config/hyperparameters.json").write_text(json.dumps(hyperparameters))
    return root


def run_train(root: Path, *args: str):
    return subprocess.run(
        [sys.executable, str(TRAIN), "train", "--sm-root", str(root), *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def titanic(titanic_csv) -> pd.DataFrame:
    return pd.read_csv(titanic_csv)


# SageMaker sends every hyperparameter as a (JSON-encoded) string.
STRING_HYPERPARAMETERS = {
    "model": '"blend"',
    "n_estimators": "500",
    "max_depth": "3",
    "learning_rate": "0.03",
    "seed": "7",
}


@pytest.mark.parametrize("split_seed", [3, 11, 2024])
def test_contract_outputs_and_quality_bar(tmp_path, titanic, split_seed):
    root = sm_root(tmp_path, titanic, split_seed, STRING_HYPERPARAMETERS)
    result = run_train(root)
    assert result.returncode == 0, result.stderr
    metric_lines = dict(line.split("=") for line in result.stdout.splitlines() if line.startswith("validation:"))
    assert set(metric_lines) == {"validation:auc", "validation:accuracy", "validation:f1", "validation:logloss"}

    document = json.loads((root / "model/metrics.json").read_text())
    assert document["hyperparameters"] == {
        "model": "blend",
        "n_estimators": 500,
        "max_depth": 3,
        "learning_rate": 0.03,
        "seed": 7,
    }
    assert document["metrics"]["validation:auc"] == pytest.approx(float(metric_lines["validation:auc"]), abs=1e-4)
    assert document["metrics"]["validation:auc"] >= 0.85
    for name in ("metrics.json", "roc_curve.png", "confusion_matrix.png"):
        assert (root / "output/data" / name).stat().st_size > 0
    assert not (root / "output/failure").exists()

    # model.joblib is one Pipeline that scores raw CSV rows (without Survived).
    sys.path.insert(0, str(REPO / "training"))
    try:
        model = joblib.load(root / "model/model.joblib")
    finally:
        sys.path.remove(str(REPO / "training"))
    raw = titanic.drop(columns=["Survived"]).head(20)
    proba = model.predict_proba(raw)
    assert proba.shape == (20, 2) and ((proba >= 0) & (proba <= 1)).all()


def test_deterministic_for_a_seed_and_logistic_selectable(tmp_path, titanic):
    runs = []
    for index in range(2):
        root = sm_root(tmp_path / str(index), titanic, 5, {"model": "logistic", "seed": "1"})
        assert run_train(root).returncode == 0
        runs.append(json.loads((root / "model/metrics.json").read_text())["metrics"])
    assert runs[0] == runs[1]
    xgb_root = sm_root(tmp_path / "xgb", titanic, 5, {"model": "xgboost", "seed": "1"})
    assert run_train(xgb_root).returncode == 0
    assert json.loads((xgb_root / "model/metrics.json").read_text())["metrics"] != runs[0]


def test_empty_channel_fails_with_causes_in_failure_file(tmp_path, titanic):
    root = sm_root(tmp_path, titanic, 1, None)
    for csv in (root / "input/data/validation").glob("*.csv"):
        csv.unlink()
    result = run_train(root)
    assert result.returncode != 0
    failure = (root / "output/failure").read_text()
    assert "channel 'validation' is empty or missing" in failure
    assert "S3 URI" in failure and "role" in failure
    assert not (root / "model/model.joblib").exists()


@pytest.mark.parametrize(
    "hyperparameters, message",
    [
        ({"max_depth": "deep"}, "invalid int value"),
        ({"model": "forest"}, "invalid choice"),
        ({"colour": "red"}, "unknown hyperparameter 'colour'"),
    ],
)
def test_bad_hyperparameters_fail_cleanly(tmp_path, titanic, hyperparameters, message):
    root = sm_root(tmp_path, titanic, 1, hyperparameters)
    result = run_train(root)
    assert result.returncode != 0
    assert message in (root / "output/failure").read_text()
    assert message in result.stderr


def test_wrong_columns_are_named(tmp_path, titanic):
    root = sm_root(tmp_path, titanic.drop(columns=["Sex"]), 1, None)
    result = run_train(root)
    assert result.returncode != 0
    assert "lacks the Titanic columns ['Sex']" in (root / "output/failure").read_text()
