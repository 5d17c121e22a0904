"""The fitted Titanic pipeline with its encoders as plain numpy: the same numbers as scikit-learn, without the
per-call validation that made one-row predictions slow (two ColumnTransformers: ~10 of a row's ~17 ms).

`ServingModel(pipeline).predict_proba(frame)` runs the model's own features step and final estimators (XGBoost,
the logistic regression) and the soft vote; only the encoders (imputers, scaler, one-hot) are replaced. It is
built only for the structure `model.build_pipeline` makes and used only if it gives exactly the pipeline's own
probabilities on probe rows when loaded; anything else serves through scikit-learn, and says why.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .features import REQUIRED_COLUMNS


class NotCompilable(ValueError):
    """The pipeline is not the shape this module knows; the message says what differs."""


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


class Encoder:
    """A fitted ColumnTransformer of [numeric: SimpleImputer(+indicator) (+ StandardScaler)] and [categorical:
    SimpleImputer(most_frequent) + OneHotEncoder(handle_unknown=ignore, dense)], as arrays."""

    def __init__(self, column_transformer) -> None:
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        parts = {name: (step, list(columns)) for name, step, columns in column_transformer.transformers_}
        if set(parts) - {"remainder"} != {"numeric", "categorical"} or parts.get("remainder", ("drop",))[0] != "drop":
            raise NotCompilable(f"encoder parts {sorted(parts)}")
        (numeric, self.numeric_columns), (categorical, self.categorical_columns) = (
            parts["numeric"],
            parts["categorical"],
        )
        if not (isinstance(numeric, Pipeline) and isinstance(categorical, Pipeline)):
            raise NotCompilable("encoder parts are not pipelines")
        imputer, *rest = [step for _, step in numeric.steps]
        if (
            not isinstance(imputer, SimpleImputer)
            or imputer.strategy != "median"
            or np.isnan(imputer.statistics_).any()
        ):
            raise NotCompilable("numeric imputer")
        self.fill = imputer.statistics_.astype(float)
        self.indicator = imputer.indicator_.features_ if imputer.indicator_ is not None else np.array([], dtype=int)
        self.scale = None
        if rest:
            (scaler,) = rest
            if not (isinstance(scaler, StandardScaler) and scaler.with_mean and scaler.with_std):
                raise NotCompilable("numeric scaler")
            self.scale = (scaler.mean_, scaler.scale_)
        cat_imputer, onehot = [step for _, step in categorical.steps]
        if not (isinstance(cat_imputer, SimpleImputer) and cat_imputer.strategy == "most_frequent"):
            raise NotCompilable("categorical imputer")
        if not (isinstance(onehot, OneHotEncoder) and onehot.handle_unknown == "ignore" and onehot.drop is None):
            raise NotCompilable("one-hot encoder")
        if getattr(onehot, "infrequent_categories_", None) and any(
            c is not None for c in onehot.infrequent_categories_
        ):
            raise NotCompilable("one-hot encoder with infrequent categories")
        self.modes = list(cat_imputer.statistics_)
        self.positions = [{value: i for i, value in enumerate(values)} for values in onehot.categories_]
        self.width = sum(len(values) for values in onehot.categories_)

    def transform(self, features: pd.DataFrame) -> np.ndarray:
        numbers = features[self.numeric_columns].to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(numbers)
        numbers = np.where(missing, self.fill, numbers)
        numeric = np.hstack([numbers, missing[:, self.indicator].astype(float)])
        if self.scale is not None:
            numeric = (numeric - self.scale[0]) / self.scale[1]
        onehot = np.zeros((len(features), self.width))
        offset = 0
        for j, column in enumerate(self.categorical_columns):
            lookup = self.positions[j]
            for i, value in enumerate(features[column].tolist()):
                position = lookup.get(self.modes[j] if _missing(value) else value)
                if position is not None:
                    onehot[i, offset + position] = 1.0
            offset += len(lookup)
        return np.hstack([numeric, onehot])


class ServingModel:
    """predict_proba of the Titanic pipeline, its encoders compiled when that gives exactly the same numbers."""

    def __init__(self, pipeline) -> None:
        self.pipeline = pipeline
        self.compiled = False
        self.why_not = ""
        try:
            self._compile()
            self._check()
            self.compiled = True
        except NotCompilable as error:
            self.why_not = str(error)

    def _compile(self) -> None:
        from sklearn.ensemble import VotingClassifier
        from sklearn.pipeline import Pipeline

        steps = dict(self.pipeline.steps) if isinstance(self.pipeline, Pipeline) else {}
        if list(steps) != ["features", "model"]:
            raise NotCompilable(f"pipeline steps {list(steps)}")
        model = steps["model"]
        members = list(model.estimators_) if isinstance(model, VotingClassifier) else [model]
        if isinstance(model, VotingClassifier) and (model.voting != "soft" or model.weights is not None):
            raise NotCompilable("a vote that is not an unweighted soft vote")
        self.members = []
        for member in members:
            if not (isinstance(member, Pipeline) and [name for name, _ in member.steps] == ["encode", "classifier"]):
                raise NotCompilable("a member that is not encode -> classifier")
            self.members.append((Encoder(member.steps[0][1]), member.steps[1][1]))
        self.features = steps["features"]

    def _check(self) -> None:
        probe = probe_rows()
        expected = self.pipeline.predict_proba(probe)
        got = self._predict(probe)
        if got.shape != expected.shape or not np.array_equal(got, expected):
            worst = float(np.max(np.abs(got - expected))) if got.shape == expected.shape else float("nan")
            raise NotCompilable(f"its probabilities differ from the pipeline's on the probe rows (by up to {worst:g})")

    def _predict(self, frame: pd.DataFrame) -> np.ndarray:
        features = self.features.transform(frame)
        probabilities = [classifier.predict_proba(encoder.transform(features)) for encoder, classifier in self.members]
        # VotingClassifier's soft vote: np.average over the members' probabilities (same order, same operation).
        return probabilities[0] if len(probabilities) == 1 else np.average(np.asarray(probabilities), axis=0)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self._predict(frame) if self.compiled else self.pipeline.predict_proba(frame)


def probe_rows() -> pd.DataFrame:
    """Raw rows that reach every branch of the encoders: each title, deck and port, unknown categories, every
    column missing in turn (None as a request's null, NaN as a CSV's empty field)."""
    base = {"Pclass": 3.0, "Name": "Braund, Mr. Owen Harris", "Sex": "male", "Age": 22.0, "SibSp": 1.0, "Parch": 0.0,
            "Ticket": "A/5 21171", "Fare": 7.25, "Cabin": None, "Embarked": "S"}  # fmt: skip
    rows = [base]
    variants = {
        "Name": ["Cumings, Mrs. John Bradley", "Heikkinen, Miss. Laina", "Palsson, Master. Gosta", "Uruchurtu, Don. Manuel",
                 "Reuchlin, Jonkheer. John George", "no title at all", "Mlle, Mlle. Test", "Ms, Ms. Test"],
        "Sex": ["female", "unknown"], "Embarked": ["C", "Q", "X"], "Pclass": [1.0, 2.0],
        "Cabin": ["C85", "B57 B59", "T", "Z9", "G6"], "Ticket": ["113803", "PC 17599", "347082"],
        "Age": [0.42, 80.0], "Fare": [0.0, 512.3292], "SibSp": [8.0], "Parch": [6.0],
    }  # fmt: skip
    for column, values in variants.items():
        rows += [{**base, column: value} for value in values]
    for column in REQUIRED_COLUMNS:
        rows += [{**base, column: None}, {**base, column: math.nan}]
    frame = pd.DataFrame(rows, columns=REQUIRED_COLUMNS)
    for column in ("Pclass", "Age", "SibSp", "Parch", "Fare"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame
