"""Serving the forecasting example (SageMaker's handler convention): a horizon in, the forecast out.

`train.py` copies this file into the model's code/ folder, so `inv serve --run <job>` (or a SageMaker endpoint)
finds it in /opt/ml/model/code/. Request: JSON {"horizon": 6} (or {"instances": [{"horizon": 6}]}), or CSV / JSON
Lines with one horizon. Answer: {"predictions": [{"ds": "1960-01-01", "AutoETS": 419.2, "SeasonalNaive": 417.0}, ...]}.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from gs_serving import codecs

MAX_HORIZON = 60
ACCEPTS = (codecs.JSON, codecs.CSV, codecs.JSONLINES)  # what output_fn answers (records are not an array)


def model_fn(model_dir: str):
    with open(Path(model_dir) / "model.pkl", "rb") as handle:
        return pickle.load(handle)


def input_fn(body: bytes, content_type: str) -> int:
    kind = content_type.split(";")[0].strip().lower()
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        raise codecs.BadRequest('the body is empty: send a horizon, e.g. {"horizon": 6}')
    if kind == "text/csv":
        value = text.splitlines()[-1].split(",")[0]
    elif kind in ("application/json", "application/jsonlines"):
        try:
            document = json.loads(text.splitlines()[0] if kind == "application/jsonlines" else text)
        except json.JSONDecodeError as error:
            raise codecs.BadRequest(f"the body is not JSON: {error.msg}") from None
        if isinstance(document, dict) and "instances" in document:
            document = (document["instances"] or [None])[0]
        value = document.get("horizon") if isinstance(document, dict) else document
    else:
        raise codecs.UnsupportedMediaType(
            f"content type {content_type!r} is not supported: send JSON, JSON Lines or CSV"
        )
    try:
        horizon = int(value)
    except (TypeError, ValueError):
        raise codecs.BadRequest(f"horizon {value!r} is not a whole number") from None
    if not 1 <= horizon <= MAX_HORIZON:
        raise codecs.BadRequest(f"horizon {horizon} must be between 1 and {MAX_HORIZON} months")
    return horizon


def predict_fn(horizon: int, model):
    forecast = model.predict(h=horizon)
    forecast["ds"] = forecast["ds"].dt.strftime("%Y-%m-%d")
    return forecast.drop(columns=["unique_id"], errors="ignore").to_dict(orient="records")


def output_fn(records: list[dict], accept: str):
    if codecs.media_type(accept) == codecs.CSV:  # one month a line: ds,AutoETS,SeasonalNaive
        return codecs.encode([list(record.values()) for record in records], accept)
    return codecs.encode(records, accept, envelope=True)
