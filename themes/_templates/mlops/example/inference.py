"""Serving the example of theme {{THEME}} (SageMaker's handler convention): feature rows in, probabilities out.

Request: CSV rows of numbers in the training columns' order (no header; code/example.csv is one), JSON
[[...], ...] or {"instances": [[...]]}, or JSON Lines. Answer: one probability of the positive class per row (JSON: a list, as AWS's framework containers answer).
"""

from __future__ import annotations

from pathlib import Path

import joblib


def model_fn(model_dir: str):
    return joblib.load(Path(model_dir) / "model.joblib")


def input_fn(body: bytes, content_type: str):
    from gs_serving import codecs

    rows = codecs.decode(body, content_type)  # numbers only; a bad field is a 400 naming it
    return rows if rows.ndim == 2 else rows.reshape(1, -1)


def predict_fn(rows, model):
    import pandas as pd
    from gs_serving import codecs

    columns = list(model.feature_names_in_)
    if rows.shape[1] != len(columns):  # the request's fault: a 400 (any other exception is the server's: a 500)
        raise codecs.BadRequest(f"each row needs {len(columns)} numbers (the training columns), got {rows.shape[1]}")
    return model.predict_proba(pd.DataFrame(rows, columns=columns))[:, 1]


def output_fn(prediction, accept: str):
    from gs_serving import codecs

    return codecs.encode(prediction, accept)
