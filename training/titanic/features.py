"""Preprocessing on the raw Kaggle Titanic columns: one scikit-learn Pipeline, fitted with the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

TARGET = "Survived"
REQUIRED_COLUMNS = ["Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket", "Fare", "Cabin", "Embarked"]

_TITLE_GROUPS = {
    "Mr": "Mr",
    "Mrs": "Mrs",
    "Mme": "Mrs",
    "Miss": "Miss",
    "Mlle": "Miss",
    "Ms": "Miss",
    "Master": "Master",
}
NUMERIC = [
    "Pclass",
    "Age",
    "SibSp",
    "Parch",
    "Fare",
    "FamilySize",
    "IsAlone",
    "HasCabin",
    "FarePerPerson",
    "TicketGroupSize",
    "GroupSurvival",
]
CATEGORICAL = ["Sex", "Embarked", "Title", "Deck"]


def _surname(names: pd.Series) -> pd.Series:
    return names.str.split(",", n=1).str[0].str.strip()


def _lookup(values: pd.Series, table: dict, missing: float) -> pd.Series:
    # Series.map(dict) turns the whole table into a Series on every call: most of a one-row prediction.
    return pd.Series([table.get(value, missing) for value in values], index=values.index, dtype=float)


class TitanicFeatures(BaseEstimator, TransformerMixin):
    """Derived features: title, family and ticket-group size, deck, fare per person, and group survival.

    Families and ticket groups travelled and survived together. `GroupSurvival` is the survival rate of the
    *other* members of a passenger's ticket or surname group among the training rows: learnt in fit, leave-one-out
    on the training rows themselves (fit_transform) so a row never sees its own label, NaN when no one is known.
    """

    def fit(self, X: pd.DataFrame, y=None):
        self.ticket_counts_ = X["Ticket"].value_counts().to_dict()
        self.group_stats_ = {}
        if y is not None:
            labels = pd.Series(np.asarray(y, dtype=float), index=X.index)
            for key, values in (("Ticket", X["Ticket"]), ("Surname", _surname(X["Name"]))):
                grouped = labels.groupby(values.values)
                self.group_stats_[key] = (grouped.sum().to_dict(), grouped.count().to_dict())
        return self

    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params):
        self.fit(X, y)
        labels = None if y is None else np.asarray(y, dtype=float)
        return self._transform(X, own_labels=labels)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        return self._transform(X, own_labels=None)

    def _group_survival(self, X: pd.DataFrame, own_labels) -> pd.Series:
        rates = []
        for key, values in (("Ticket", X["Ticket"]), ("Surname", _surname(X["Name"]))):
            if key not in self.group_stats_:
                continue
            sums, counts = self.group_stats_[key]
            total = _lookup(values, sums, 0.0)
            count = _lookup(values, counts, 0.0)
            if own_labels is not None:  # leave this row's own label out
                total, count = total - own_labels, count - 1
            rates.append((total / count.where(count > 0)).rename(key))
        if not rates:
            return pd.Series(np.nan, index=X.index)
        return pd.concat(rates, axis=1).mean(axis=1)

    def _transform(self, X: pd.DataFrame, own_labels) -> pd.DataFrame:
        out = pd.DataFrame(index=X.index)
        out["GroupSurvival"] = self._group_survival(X, own_labels)
        title = X["Name"].str.extract(r",\s*([^\.]+)\.", expand=False).str.strip()
        out["Title"] = title.map(_TITLE_GROUPS).fillna("Rare")
        out["FamilySize"] = X["SibSp"] + X["Parch"] + 1
        out["IsAlone"] = (out["FamilySize"] == 1).astype(int)
        out["HasCabin"] = X["Cabin"].notna().astype(int)
        out["Deck"] = X["Cabin"].astype("string").str[0].fillna("U").astype(object)
        out["TicketGroupSize"] = _lookup(X["Ticket"], self.ticket_counts_, 1.0)
        out["FarePerPerson"] = X["Fare"] / np.maximum(out["TicketGroupSize"], 1)
        for column in ["Pclass", "Age", "SibSp", "Parch", "Fare"]:
            out[column] = pd.to_numeric(X[column], errors="coerce")
        out["Sex"] = X["Sex"].astype(object)
        out["Embarked"] = X["Embarked"].astype(object)
        return out[NUMERIC + CATEGORICAL]


def encoder(scale: bool) -> ColumnTransformer:
    """The derived features as model input: numbers imputed (and scaled for linear models), categories one-hot."""
    numeric_steps = [("impute", SimpleImputer(strategy="median", add_indicator=True))]
    if scale:
        numeric_steps.append(("scale", StandardScaler()))
    return ColumnTransformer(
        [
            ("numeric", Pipeline(numeric_steps), NUMERIC),
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                CATEGORICAL,
            ),
        ]
    )
