"""Request bodies in, predictions out: CSV, JSON and JSON Lines (what SageMaker's endpoints and batch transform
send). A body that does not decode raises BadRequest (400); a media type no decoder knows, UnsupportedMediaType
(415); an Accept no encoder knows, NotAcceptable (406). User handlers may raise these too."""

from __future__ import annotations

import csv
import io
import json
import math

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
_ALIASES = {"application/x-jsonlines": JSONLINES, "application/jsonl": JSONLINES, "application/x-ndjson": JSONLINES}
SUPPORTED = (CSV, JSON, JSONLINES)


class BadRequest(ValueError):
    status = 400


class UnsupportedMediaType(ValueError):
    status = 415


class NotAcceptable(ValueError):
    status = 406


def media_type(header: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv'; aliases of JSON Lines -> application/jsonlines."""
    value = (header or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(value, value)


def text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 text (byte {error.start})") from None


def csv_rows(body: bytes) -> list[list[str]]:
    """Every non-blank line as a list of fields; all lines must have the first line's number of fields."""
    rows = [row for row in csv.reader(io.StringIO(text(body), newline="")) if any(field.strip() for field in row)]
    if not rows:
        raise BadRequest("the body is empty: send at least one CSV row")
    width = len(rows[0])
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise BadRequest(f"CSV row {number} has {len(row)} fields, row 1 has {width}")
    return rows


def json_records(body: bytes, content_type: str) -> list:
    """JSON: a list, or {"instances": [...]}; JSON Lines: one value a line. Returns the list of instances."""
    source = text(body)
    if not source.strip():
        raise BadRequest("the body is empty: send at least one record")
    if content_type == JSONLINES:
        values = []
        for number, line in enumerate(source.splitlines(), start=1):
            if line.strip():
                try:
                    values.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise BadRequest(f"JSON Lines line {number} is not JSON: {error.msg}") from None
        return values
    try:
        document = json.loads(source)
    except json.JSONDecodeError as error:
        raise BadRequest(f"the body is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    if isinstance(document, dict) and "instances" in document:
        document = document["instances"]
    if not isinstance(document, list):
        raise BadRequest('send a JSON list of instances or {"instances": [...]}')
    if not document:
        raise BadRequest("no instances: the list is empty")
    return document


def number(field: str, where: str) -> float:
    """A CSV field as a float; an empty field is missing (NaN). Infinity is refused (a 400, not the
    500 scikit-learn's "Input contains infinity" would be): no model was trained on it."""
    if not field.strip():
        return math.nan
    try:
        value = float(field)
    except ValueError:
        raise BadRequest(f"{where}: {field!r} is not a number") from None
    if math.isinf(value):
        raise BadRequest(f"{where}: {field!r} is not a finite number")
    return value


def decode(body: bytes, content_type: str):
    """The default input_fn: CSV rows of numbers, or JSON / JSON Lines instances, as a numpy array."""
    import numpy as np

    kind = media_type(content_type)
    if kind == CSV:
        rows = csv_rows(body)
        return np.array(
            [[number(f, f"CSV row {r} field {c}") for c, f in enumerate(row, 1)] for r, row in enumerate(rows, 1)]
        )
    if kind in (JSON, JSONLINES):
        instances = json_records(body, kind)
        try:
            return np.asarray(instances, dtype=float)
        except (TypeError, ValueError) as error:
            raise BadRequest(f"the instances are not a rectangular array of numbers: {error}") from None
    raise UnsupportedMediaType(
        f"content type {content_type or '(none)'!r} is not supported: send {', '.join(SUPPORTED)}"
    )


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else value


def encode(predictions, accept: str) -> tuple[bytes, str]:
    """The default output_fn: one prediction per instance. CSV: one a line (a list: comma-separated);
    JSON: {"predictions": [...]}; JSON Lines: {"prediction": ...} a line."""
    kind = media_type(accept)
    values = _plain(predictions)
    values = values if isinstance(values, list) else [values]
    if kind == JSON:
        return (json.dumps({"predictions": values}) + "\n").encode(), JSON
    if kind == JSONLINES:
        return "".join(json.dumps({"prediction": v}) + "\n" for v in values).encode(), JSONLINES
    if kind == CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for value in values:
            writer.writerow(value if isinstance(value, list) else [value])
        return out.getvalue().encode(), CSV
    raise NotAcceptable(f"Accept {accept!r} is not supported: ask for {', '.join(SUPPORTED)}")
