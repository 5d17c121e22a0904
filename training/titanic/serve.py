"""The tabular image's built-in model server: the Titanic model of `train` (model.joblib), raw Titanic columns in,
the probability of survival out, one per row and in order.

Payloads: CSV with a header row naming the Titanic columns (a staged channel file as it is, with or without
`Survived`; missing values as empty fields) or, with no header, rows in the Kaggle order (11 fields as in
test.csv, or 12 with `Survived` second as in train.csv) unless GS_CSV_COLUMNS names them (what `inv transform`
sets: a file split by line has its header in one mini-batch only);
JSON as a list of records or {"instances": [records]}; JSON Lines, one record a line. Missing keys and nulls are
missing values, as in training.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from gs_serving import codecs
from gs_serving.handler import ModelLoadError

from .features import REQUIRED_COLUMNS, TARGET

NUMERIC = ("Pclass", "Age", "SibSp", "Parch", "Fare")
TEST_ORDER = ["PassengerId", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket", "Fare", "Cabin", "Embarked"]
TRAIN_ORDER = TEST_ORDER[:1] + [TARGET] + TEST_ORDER[1:]
# Each row's probability depends on that row alone (the features use only what was learnt in training): requests
# that arrive together are predicted in one call (gs_serving.handler).
ROW_WISE = True
# Batch transform splits a file by line, so only the first mini-batch would hold the header: `inv transform` sends
# the rows without it and names the columns here (the model's environment).
COLUMNS_VARIABLE = "GS_CSV_COLUMNS"


def model_fn(model_dir: str):
    path = Path(model_dir) / "model.joblib"
    if not path.is_file():
        found = sorted(p.name for p in Path(model_dir).iterdir()) if Path(model_dir).is_dir() else []
        raise ModelLoadError(
            f"no model.joblib in {model_dir} (found: {', '.join(found) or 'nothing'}): serve the model.tar.gz of a Titanic training run"
        )
    import sys

    import joblib

    from .compiled import ServingModel

    model = ServingModel(joblib.load(path))
    if not model.compiled:
        print(f"serve: note: predicting through scikit-learn's own encoders ({model.why_not})", file=sys.stderr)
    return model


def _records_from_csv(body: bytes) -> list[dict]:
    rows = codecs.csv_rows(body)
    header = [field.strip() for field in rows[0]]
    if set(header) & set(REQUIRED_COLUMNS):
        names, data, first = header, rows[1:], 2
        if not data:
            raise codecs.BadRequest("the CSV has a header row but no data rows")
    elif os.environ.get(COLUMNS_VARIABLE):
        names, data, first = [n.strip() for n in os.environ[COLUMNS_VARIABLE].split(",")], rows, 1
        if len(names) != len(header):
            raise codecs.BadRequest(
                f"the CSV rows have {len(header)} fields but {COLUMNS_VARIABLE} names {len(names)} columns"
            )
    elif len(header) in (len(TEST_ORDER), len(TRAIN_ORDER)):
        names, data, first = (TEST_ORDER if len(header) == len(TEST_ORDER) else TRAIN_ORDER), rows, 1
    else:
        raise codecs.BadRequest(
            f"the CSV has no header naming the Titanic columns ({', '.join(REQUIRED_COLUMNS)}) and its rows have "
            f"{len(header)} fields, not {len(TEST_ORDER)} (test.csv order) or {len(TRAIN_ORDER)} (train.csv order)"
        )
    return [
        {name: (value if value.strip() else None) for name, value in zip(names, row, strict=True)} | {"_row": number}
        for number, row in enumerate(data, start=first)
    ]


def input_fn(body: bytes, content_type: str):
    """A DataFrame of the raw columns, typed as training read them (numbers as floats, text as str)."""
    import pandas as pd

    kind = codecs.media_type(content_type)
    if kind == codecs.CSV:
        records, where = _records_from_csv(body), "CSV row"
    elif kind in (codecs.JSON, codecs.JSONLINES):
        records, where = codecs.json_records(body, kind), "record"
        for number, record in enumerate(records, start=1):
            if not isinstance(record, dict):
                raise codecs.BadRequest(
                    f"record {number} is not an object of Titanic columns ({', '.join(REQUIRED_COLUMNS)})"
                )
            if not set(record) & set(REQUIRED_COLUMNS):
                raise codecs.BadRequest(
                    f"record {number} has none of the Titanic columns ({', '.join(REQUIRED_COLUMNS)})"
                )
        records = [record | {"_row": number} for number, record in enumerate(records, start=1)]
    else:
        raise codecs.UnsupportedMediaType(
            f"content type {content_type or '(none)'!r} is not supported: send {', '.join(codecs.SUPPORTED)}"
        )
    columns = {}
    for name in REQUIRED_COLUMNS:
        values = []
        for record in records:
            value = record.get(name)
            if name in NUMERIC:
                if isinstance(value, bool) or not (value is None or isinstance(value, (int, float, str))):
                    raise codecs.BadRequest(f"{where} {record['_row']}: {name}={value!r} is not a number")
                value = (
                    codecs.number(str(value), f"{where} {record['_row']}: {name}") if value is not None else math.nan
                )
            elif value is not None:
                value = str(value)
            values.append(value)
        columns[name] = values
    return pd.DataFrame(columns)


def predict_fn(frame, model):
    return model.predict_proba(frame)[:, 1]


def output_fn(prediction, accept: str):
    return codecs.encode(prediction, accept)
