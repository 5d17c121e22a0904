"""Request bodies in, predictions out, as AWS's framework containers read and write them (the SageMaker inference
toolkit's decoder/encoder, the scikit-learn and XGBoost containers): CSV (header-less numbers), JSON (a list or a
list of lists), NPY and NPZ (what the SDK's NumpySerializer sends), LIBSVM (XGBoost's text format); JSON Lines
beyond them. Out: a bare JSON list (as AWS's containers answer), CSV, NPY or JSON Lines, as `Accept` asks
(RFC 9110: q-values and wildcards).

A body that does not decode raises BadRequest (400); a media type no decoder knows, UnsupportedMediaType (415); an
Accept nothing here can answer, NotAcceptable (406). User handlers may raise these too."""

from __future__ import annotations

import csv
import io
import json
import math
import zipfile

CSV = "text/csv"
JSON = "application/json"
JSONLINES = "application/jsonlines"
NPY = "application/x-npy"
NPZ = "application/x-npz"
LIBSVM = "text/libsvm"
_ALIASES = {
    "application/x-jsonlines": JSONLINES,
    "application/jsonl": JSONLINES,
    "application/x-ndjson": JSONLINES,
    "text/x-libsvm": LIBSVM,
}
DECODABLE = (CSV, JSON, JSONLINES, NPY, NPZ, LIBSVM)
ENCODABLE = (JSON, CSV, JSONLINES, NPY)
# Kept for handlers written against the earlier name (the theme examples' docs say it).
SUPPORTED = ENCODABLE


class BadRequest(ValueError):
    status = 400


class UnsupportedMediaType(ValueError):
    status = 415


class NotAcceptable(ValueError):
    status = 406


def media_type(header: str | None) -> str:
    """'text/csv; charset=utf-8' -> 'text/csv'; aliases of JSON Lines and LIBSVM -> their one name."""
    value = (header or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(value, value)


def accept_ranges(header: str | None) -> list[str]:
    """The media ranges of an Accept header, best first (RFC 9110 12.5.1: by q-value, then as given); q=0 and
    malformed parts are left out."""
    ranges = []
    for position, part in enumerate((header or "").split(",")):
        media, *parameters = (piece.strip() for piece in part.split(";"))
        media = media_type(media)
        if "/" not in media:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = -1.0
        if 0 < weight <= 1:
            ranges.append((-weight, position, media))
    return [media for _, _, media in sorted(ranges)]


def negotiate(header: str | None, default: str, supported: tuple[str, ...] | None) -> str:
    """The answer's media type: the best range of `header` that `supported` holds (None: the handler did not say
    what it can answer, so the best concrete type as asked); a wildcard, or no Accept at all, is `default`."""
    ranges = accept_ranges(header)
    if not ranges:
        return default
    for media in ranges:
        kind, _, subtype = media.partition("/")
        if media == "*/*" or subtype == "*":
            candidates = [default, *(supported or ())]
            match = next((c for c in candidates if media == "*/*" or c.startswith(f"{kind}/")), None)
            if match:
                return match
        elif supported is None or media in supported:
            return media
    raise NotAcceptable(f"Accept {header!r} is not supported: ask for {', '.join(supported or ENCODABLE)}")


def text(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BadRequest(f"the body is not UTF-8 text (byte {error.start})") from None


def csv_rows(body: bytes) -> list[list[str]]:
    """Every non-blank line as a list of fields; all lines must have the first line's number of fields."""
    try:
        parsed = list(csv.reader(io.StringIO(text(body), newline="")))
    except csv.Error as error:
        raise BadRequest(f"the body is not CSV: {error}") from None
    rows = [row for row in parsed if any(field.strip() for field in row)]
    if not rows:
        raise BadRequest("the body is empty: send at least one CSV row")
    width = len(rows[0])
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise BadRequest(f"CSV row {number} has {len(row)} fields, row 1 has {width}")
    return rows


def _json(source: str, where: str):
    try:
        return json.loads(source)
    except json.JSONDecodeError as error:
        raise BadRequest(f"{where} is not JSON: {error.msg} at line {error.lineno} column {error.colno}") from None
    except RecursionError:
        raise BadRequest(f"{where} is nested too deeply to read: send a flat list of instances") from None


def json_records(body: bytes, content_type: str) -> list:
    """JSON: a list, or {"instances": [...]}; JSON Lines: one value a line. Returns the list of instances."""
    source = text(body)
    if not source.strip():
        raise BadRequest("the body is empty: send at least one record")
    if content_type == JSONLINES:
        return [
            _json(line, f"JSON Lines line {number}")
            for number, line in enumerate(source.splitlines(), start=1)
            if line.strip()
        ]
    document = _json(source, "the body")
    if isinstance(document, dict) and "instances" in document:
        document = document["instances"]
    if not isinstance(document, list):
        raise BadRequest('send a JSON list of instances or {"instances": [...]}')
    if not document:
        raise BadRequest("no instances: the list is empty")
    return document


def number(field: str, where: str) -> float:
    """A CSV field as a float; an empty field is missing (NaN), as numpy's genfromtxt reads it. Infinity is
    refused (a 400, not the 500 scikit-learn's "Input contains infinity" would be): no model was trained on it."""
    if not field.strip():
        return math.nan
    try:
        value = float(field)
    except ValueError:
        raise BadRequest(f"{where}: {field!r} is not a number") from None
    if math.isinf(value):
        raise BadRequest(f"{where}: {field!r} is not a finite number")
    return value


def _rows_of(array):
    """One instance as one row: a 1-D array is a single instance of its features (AWS's scikit-learn container)."""
    return array.reshape(1, -1) if getattr(array, "ndim", 2) == 1 else array


NPY_MAGIC, ZIP_MAGIC = b"\x93NUMPY", b"PK\x03\x04"


def _npy(body: bytes):
    import numpy as np

    if not body.startswith(NPY_MAGIC):
        raise BadRequest("the body is not NPY (it does not start with NumPy's \\x93NUMPY): send np.save's bytes")
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except ValueError as error:
        raise BadRequest(f"the body is not NPY that numpy reads without pickle ({error})") from None
    except (OSError, EOFError) as error:
        raise BadRequest(f"the body is not NPY: {error or 'truncated'}") from None
    if not hasattr(array, "ndim"):
        raise BadRequest("the body is an NPZ archive, not NPY: send it as application/x-npz")
    return _rows_of(array)


def _npz(body: bytes):
    """A scipy sparse matrix saved with save_npz (what the inference toolkit reads), or an archive of one array."""
    import numpy as np

    if not body.startswith(ZIP_MAGIC):
        raise BadRequest("the body is not NPZ (a zip archive, as np.savez or scipy.sparse.save_npz write)")
    try:
        archive = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise BadRequest(f"the body is not NPZ: {error or 'truncated'}") from None
    if hasattr(archive, "ndim"):
        raise BadRequest("the body is NPY, not NPZ: send it as application/x-npy")
    with archive:
        names = set(archive.files)
        if {"format", "shape", "data"} <= names:
            import scipy.sparse

            return scipy.sparse.load_npz(io.BytesIO(body))
        if len(names) == 1:
            return _rows_of(archive[names.pop()])
    raise BadRequest(f"the NPZ archive holds {len(names)} arrays ({', '.join(sorted(names))}): send one")


def _libsvm(body: bytes):
    """`label index:value ...` a line (the label and qid are optional and ignored): a sparse matrix whose columns are
    the indices as written, as XGBoost reads a LIBSVM file."""
    import scipy.sparse

    data, indices, pointers = [], [], [0]
    for number_, line in enumerate(text(body).splitlines(), start=1):
        if not line.strip():
            continue
        row = {}
        for token in line.split():
            key, sep, value = token.partition(":")
            if not sep or key == "qid":
                continue
            try:
                column = int(key)
                if column < 0:
                    raise ValueError(key)
            except ValueError:
                raise BadRequest(f"LIBSVM line {number_}: {token!r} is not index:value") from None
            row[column] = number(value, f"LIBSVM line {number_} index {column}")
        for column in sorted(row):
            indices.append(column)
            data.append(row[column])
        pointers.append(len(indices))
    if len(pointers) == 1:
        raise BadRequest("the body is empty: send at least one LIBSVM line")
    width = max(indices, default=-1) + 1
    return scipy.sparse.csr_matrix((data, indices, pointers), shape=(len(pointers) - 1, max(width, 1)))


def decode(body: bytes, content_type: str):
    """The default input_fn: CSV rows of numbers, JSON / JSON Lines instances, NPY as a numpy array (2-D: one row an
    instance); NPZ and LIBSVM as a sparse matrix."""
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
            array = np.asarray(instances, dtype=float)
        except (TypeError, ValueError) as error:
            raise BadRequest(f"the instances are not a rectangular array of numbers: {error}") from None
        return _rows_of(array)
    if kind == NPY:
        return _npy(body)
    if kind == NPZ:
        return _npz(body)
    if kind == LIBSVM:
        return _libsvm(body)
    raise UnsupportedMediaType(
        f"content type {content_type or '(none)'!r} is not supported: send {', '.join(DECODABLE)}"
    )


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else value


def encode(predictions, accept: str, envelope: bool = False) -> tuple[bytes, str]:
    """The default output_fn, one prediction per instance. JSON: a bare list, as AWS's containers answer
    (`envelope`: {"predictions": [...]}, the project's own handlers' documented answer); CSV: one a line (a row of
    several values: comma-separated); NPY: the array; JSON Lines: one value a line (`envelope`: {"prediction": v})."""
    kind = media_type(accept)
    if kind == NPY:
        import numpy as np

        buffer = io.BytesIO()
        try:
            np.save(buffer, np.asarray(predictions), allow_pickle=False)
        except ValueError as error:
            raise ValueError(f"the prediction cannot be sent as NPY ({error}): ask for JSON") from None
        return buffer.getvalue(), NPY
    values = _plain(predictions)
    values = values if isinstance(values, list) else [values]
    if kind == JSON:
        return (json.dumps({"predictions": values} if envelope else values) + "\n").encode(), JSON
    if kind == JSONLINES:
        lines = (json.dumps({"prediction": v} if envelope else v) + "\n" for v in values)
        return "".join(lines).encode(), JSONLINES
    if kind == CSV:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        for value in values:
            writer.writerow(value if isinstance(value, list) else [value])
        return out.getvalue().encode(), CSV
    raise NotAcceptable(f"Accept {accept!r} is not supported: ask for {', '.join(ENCODABLE)}")
