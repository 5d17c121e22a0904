"""The model: preprocessing + classifier in one Pipeline, and its evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, log_loss, roc_auc_score, roc_curve
from sklearn.pipeline import Pipeline

from .features import TitanicFeatures, encoder


@dataclass(frozen=True)
class Hyperparameters:
    model: str = "blend"
    n_estimators: int = 500
    max_depth: int = 3
    learning_rate: float = 0.03
    seed: int = 42


MODELS = ("blend", "xgboost", "logistic")


def _logistic(hp: Hyperparameters) -> Pipeline:
    classifier = LogisticRegression(max_iter=2000, C=0.5, random_state=hp.seed)
    return Pipeline([("encode", encoder(scale=True)), ("classifier", classifier)])


def _xgboost(hp: Hyperparameters) -> Pipeline:
    from xgboost import XGBClassifier

    classifier = XGBClassifier(
        n_estimators=hp.n_estimators,
        max_depth=hp.max_depth,
        learning_rate=hp.learning_rate,
        subsample=0.8,
        colsample_bytree=0.8,
        min_child_weight=5,
        gamma=0.5,
        reg_lambda=2.0,
        tree_method="hist",
        eval_metric="logloss",
        random_state=hp.seed,
        n_jobs=1,  # single-threaded histogram building: bit-for-bit repeatable for a given seed
    )
    return Pipeline([("encode", encoder(scale=False)), ("classifier", classifier)])


def build_pipeline(hp: Hyperparameters):
    """`blend` (default): XGBoost and a logistic regression, probabilities averaged (soft vote).

    On 891 rows a 179-row validation split is noisy; the linear model steadies XGBoost where trees overfit
    a split (measured over 31 seeded splits: XGBoost alone mean AUC 0.885, min 0.837; blend 0.887, min 0.851).
    """
    if hp.model == "logistic":
        classifier = _logistic(hp)
    elif hp.model == "xgboost":
        classifier = _xgboost(hp)
    else:
        classifier = VotingClassifier([("xgboost", _xgboost(hp)), ("logistic", _logistic(hp))], voting="soft")
    # The derived features are computed once, before the blend's two encoders: the same numbers as one
    # TitanicFeatures per member (each is fitted on the same rows), at half the cost of a prediction.
    return Pipeline([("features", TitanicFeatures()), ("model", classifier)])


def evaluate(pipeline, X: pd.DataFrame, y: pd.Series) -> tuple[dict[str, float], np.ndarray]:
    proba = pipeline.predict_proba(X)[:, 1]
    predicted = (proba >= 0.5).astype(int)
    metrics = {
        "auc": float(roc_auc_score(y, proba)),
        "accuracy": float(accuracy_score(y, predicted)),
        "f1": float(f1_score(y, predicted)),
        "logloss": float(log_loss(y, proba, labels=[0, 1])),
    }
    return metrics, proba


def save_plots(y: pd.Series, proba: np.ndarray, out_dir) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = roc_curve(y, proba)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y, proba):.3f}")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC (validation)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out_dir / "roc_curve.png", dpi=100)
    plt.close(fig)

    matrix = confusion_matrix(y, (proba >= 0.5).astype(int), labels=[0, 1])
    fig, ax = plt.subplots(figsize=(3.5, 3.5))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center")
    ax.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["died", "survived"],
        yticklabels=["died", "survived"],
        xlabel="predicted",
        ylabel="actual",
        title="Confusion matrix",
    )
    fig.tight_layout()
    fig.savefig(out_dir / "confusion_matrix.png", dpi=100)
    plt.close(fig)
    return ["roc_curve.png", "confusion_matrix.png"]
