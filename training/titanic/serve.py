"""The tabular image's built-in model server: the Titanic model of `train` (model.joblib), raw Titanic columns in,
the probability of survival out, one per row and in order.

Payloads: CSV with a header row naming the Titanic columns (a staged channel file as it is, with or without
`Survived`; missing values as empty fields) or, with no header, rows in the Kaggle order (11 fields as in
test.csv, or 12 with `Survived` second as in train.csv) unless GS_CSV_COLUMNS names them (what `inv transform`
sets: a file split by line has its header in one mini-batch only);
JSON as a list of records or {"instances": [records]}; JSON Lines, one record a line. Missing keys and nulls are
missing values, as in training. Column names match whatever their case; a column given twice, or an unknown name
where a column the model reads is missing (a misspelling), is a 400 that names it.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import os
from pathlib import Path

from gs_serving import codecs
from gs_serving.handler import ModelLoadError

from .features import REQUIRED_COLUMNS, TARGET

NUMERIC = ("Pclass", "Age", "SibSp", "Parch", "Fare")
TEST_ORDER = ["PassengerId", "Pclass", "Name", "Sex", "Age", "SibSp", "Parch", "Ticket", "Fare", "Cabin", "Embarked"]
TRAIN_ORDER = TEST_ORDER[:1] + [TARGET] + TEST_ORDER[1:]
KNOWN = {name.lower(): name for name in TRAIN_ORDER}  # names match whatever their case: `sex` is Sex
# Each row's probability depends on that row alone (the features use only what was learnt in training): requests
# that arrive together are predicted in one call (gs_serving.handler).
ROW_WISE = True
# A CSV of Titanic rows carries its header (a staged channel file as it is): batch transform takes it off the rows
# and names the columns here, in the model's environment (a file split by line has its header in one mini-batch).
CSV_HEADER = True
COLUMNS_VARIABLE = "GS_CSV_COLUMNS"
ACCEPTS = codecs.ENCODABLE


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


def canonical(names: list[str], where: str) -> list[str | None]:
    """Each name as the Titanic column it names, whatever its case (None: not a Titanic column). A column named
    twice is refused, and so is a request that lacks a column the model reads while it names an unknown one (a
    misspelling would otherwise be a missing value and a quietly worse answer)."""
    found: dict[str, int] = {}
    out: list[str | None] = []
    for position, name in enumerate(names, start=1):
        column = KNOWN.get(name.strip().lower())
        if column in found:
            raise codecs.BadRequest(
                f"{where}: the column {column} is given twice (fields {found[column]} and {position})"
            )
        if column:
            found[column] = position
        out.append(column)
    unknown = [name for name, column in zip(names, out, strict=True) if column is None and name.strip()]
    missing = [column for column in REQUIRED_COLUMNS if column not in found]
    if unknown and missing:
        guesses = {
            name: difflib.get_close_matches(name.strip().lower(), list(KNOWN), n=1, cutoff=0.6) for name in unknown
        }
        named = ", ".join(
            f"{name!r}" + (f" (did you mean {KNOWN[guesses[name][0]]!r}?)" if guesses[name] else "") for name in unknown
        )
        raise codecs.BadRequest(
            f"{where}: unknown column(s) {named}, and no {', '.join(missing)}: name the Titanic columns "
            f"({', '.join(REQUIRED_COLUMNS)})"
        )
    return out


def _columns_from_environment() -> list[str]:
    return next(csv.reader(io.StringIO(os.environ[COLUMNS_VARIABLE])), [])


def _records_from_csv(body: bytes) -> list[dict]:
    rows = codecs.csv_rows(body)
    first = [field.strip() for field in rows[0]]
    if any(field.lower() in KNOWN for field in first):
        names, data, start = canonical(first, "the CSV header"), rows[1:], 2
        if not data:
            raise codecs.BadRequest("the CSV has a header row but no data rows")
    elif os.environ.get(COLUMNS_VARIABLE):
        names, data, start = canonical(_columns_from_environment(), COLUMNS_VARIABLE), rows, 1
        if len(names) != len(first):
            raise codecs.BadRequest(
                f"the CSV rows have {len(first)} fields but {COLUMNS_VARIABLE} names {len(names)} columns"
            )
    elif len(first) in (len(TEST_ORDER), len(TRAIN_ORDER)):
        names, data, start = (TEST_ORDER if len(first) == len(TEST_ORDER) else TRAIN_ORDER), rows, 1
    else:
        raise codecs.BadRequest(
            f"the CSV has no header naming the Titanic columns ({', '.join(REQUIRED_COLUMNS)}) and its rows have "
            f"{len(first)} fields, not {len(TEST_ORDER)} (test.csv order) or {len(TRAIN_ORDER)} (train.csv order)"
        )
    return [
        {name: (value if value.strip() else None) for name, value in zip(names, row, strict=True) if name}
        | {"_row": number}
        for number, row in enumerate(data, start=start)
    ]


def _records_from_json(body: bytes, kind: str) -> list[dict]:
    records = codecs.json_records(body, kind)
    out = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise codecs.BadRequest(
                f"record {number} is not an object of Titanic columns ({', '.join(REQUIRED_COLUMNS)})"
            )
        keys = [str(key) for key in record]
        names = canonical(keys, f"record {number}")
        if not any(names):
            raise codecs.BadRequest(f"record {number} has none of the Titanic columns ({', '.join(REQUIRED_COLUMNS)})")
        out.append({name: value for name, value in zip(names, record.values(), strict=True) if name} | {"_row": number})
    return out


def input_fn(body: bytes, content_type: str):
    """A DataFrame of the raw columns, typed as training read them (numbers as floats, text as str)."""
    import pandas as pd

    kind = codecs.media_type(content_type)
    if kind == codecs.CSV:
        records, where = _records_from_csv(body), "CSV row"
    elif kind in (codecs.JSON, codecs.JSONLINES):
        records, where = _records_from_json(body, kind), "record"
    else:
        raise codecs.UnsupportedMediaType(
            f"content type {content_type or '(none)'!r} is not supported: send text/csv, application/json or "
            "application/jsonlines"
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
    return codecs.encode(prediction, accept, envelope=True)
