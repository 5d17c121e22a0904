"""The image's serving code without a container: the container contract, the codecs and the Titanic handler's
reading of requests (the project venv has numpy, pandas and scikit-learn, as the image has)."""

from __future__ import annotations

import json
import math
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "training"))

from gs_serving import codecs  # noqa: E402
from gs_serving.contract import ContractError, ServingEnvironment  # noqa: E402
from titanic import serve as titanic  # noqa: E402


def test_the_contract_reads_the_sagemaker_variables_and_refuses_bad_values():
    env = ServingEnvironment.from_environ(
        {"SAGEMAKER_BIND_TO_PORT": "9090", "SAGEMAKER_MODEL_SERVER_WORKERS": "3", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "2",
         "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/code", "SAGEMAKER_PROGRAM": "handler.py", "GS_THEME": "tabular"}
    )  # fmt: skip
    assert (env.port, env.workers, env.max_payload_bytes) == (9090, 3, 2 * 1024 * 1024)
    assert str(env.code_dir) == "/opt/ml/code" and env.program == "handler.py" and env.timeout_seconds == 60
    assert str(ServingEnvironment.from_environ({}).code_dir) == "/opt/ml/model/code"  # where the SDK repacks code
    for variable, value, message in (
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "two", "is not a whole number"),
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "0", "must be at least 1"),
        ("SAGEMAKER_BIND_TO_PORT", "70000", "is not a port"),
    ):
        with pytest.raises(ContractError, match=message):
            ServingEnvironment.from_environ({variable: value})


def test_codecs_decode_and_encode_each_format_and_name_what_is_wrong():
    assert codecs.media_type("text/csv; charset=utf-8") == "text/csv"
    assert codecs.media_type("application/x-jsonlines") == codecs.JSONLINES
    assert codecs.decode(b"1,2\n3,4\n", "text/csv").tolist() == [[1, 2], [3, 4]]
    assert codecs.decode(b'{"instances": [[1, 2]]}', "application/json").tolist() == [[1, 2]]
    assert codecs.decode(b"[1, 2]\n[3, 4]\n", "application/jsonlines").tolist() == [[1, 2], [3, 4]]
    for body, kind, error, message in (
        (b"1,2\n3\n", "text/csv", codecs.BadRequest, "CSV row 2 has 1 fields, row 1 has 2"),
        (b"1,x\n", "text/csv", codecs.BadRequest, "CSV row 1 field 2: 'x' is not a number"),
        (b"\xff\xfe", "text/csv", codecs.BadRequest, "not UTF-8"),
        (b"{}", "application/json", codecs.BadRequest, "send a JSON list"),
        (b"[]", "application/json", codecs.BadRequest, "the list is empty"),
        (b"[1]\nnope\n", "application/jsonlines", codecs.BadRequest, "line 2 is not JSON"),
        (b"1", "application/x-npy", codecs.UnsupportedMediaType, "not supported"),
    ):
        with pytest.raises(error, match=message):
            codecs.decode(body, kind)
    assert codecs.encode([0.25, 0.75], "text/csv") == (b"0.25\n0.75\n", "text/csv")
    assert json.loads(codecs.encode([0.25], "application/json")[0]) == {"predictions": [0.25]}
    assert codecs.encode([0.25], "application/jsonlines")[0] == b'{"prediction": 0.25}\n'
    with pytest.raises(codecs.NotAcceptable):
        codecs.encode([1], "image/png")


ROW = ["1", "1", "Cumings, Mrs. John Bradley", "female", "38", "1", "0", "PC 17599", "71.2833", "C85", "C"]
HEADER = ",".join(titanic.TRAIN_ORDER)


def test_the_titanic_handler_reads_rows_as_training_read_them(monkeypatch):
    row = '1,1,1,"Cumings, Mrs. John Bradley",female,38,1,0,PC 17599,71.2833,C85,C'
    with_header = titanic.input_fn(f"{HEADER}\n{row}\n".encode(), "text/csv")
    assert with_header.loc[0, "Age"] == 38.0 and with_header.loc[0, "Ticket"] == "PC 17599"
    # No header: the Kaggle order by field count (12: train.csv, with Survived), or GS_CSV_COLUMNS' order.
    assert titanic.input_fn(f"{row}\n".encode(), "text/csv").equals(with_header)
    monkeypatch.setenv("GS_CSV_COLUMNS", "Age,Sex,Pclass,Name")
    named = titanic.input_fn(b'38,female,1,"Cumings, Mrs. John Bradley"\n', "text/csv")
    assert named.loc[0, ["Age", "Sex", "Pclass"]].tolist() == [38.0, "female", 1.0]
    assert math.isnan(named.loc[0, "Fare"])  # a column not sent is a missing value, as in training
    monkeypatch.delenv("GS_CSV_COLUMNS")
    # JSON: missing keys and nulls are missing values; numbers may arrive as strings.
    frame = titanic.input_fn(b'{"instances": [{"Pclass": "3", "Sex": "male", "Age": null}]}', "application/json")
    assert frame.loc[0, "Pclass"] == 3.0 and math.isnan(frame.loc[0, "Age"]) and frame.loc[0, "Cabin"] is None
    for body, kind, message in (
        (f"{HEADER}\n".encode(), "text/csv", "a header row but no data rows"),
        (b"1,2,3\n", "text/csv", "no header naming the Titanic columns"),
        (b'[{"Pclass": true}]', "application/json", "record 1: Pclass=True is not a number"),
        (b'[{"Colour": "red"}]', "application/json", "record 1 has none of the Titanic columns"),
        (b'{"Pclass": 1}\n{"Age": "old"}\n', "application/jsonlines", "record 2: Age: 'old' is not a number"),
    ):
        with pytest.raises(codecs.BadRequest, match=message):
            titanic.input_fn(body, kind)
