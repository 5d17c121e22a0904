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
from gs_serving.contract import MODEL_MARKER, ContractError, ServingEnvironment  # noqa: E402
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
        (b"1,-inf\n", "text/csv", codecs.BadRequest, "CSV row 1 field 2: '-inf' is not a finite number"),
        (b"\xff\xfe", "text/csv", codecs.BadRequest, "not UTF-8"),
        (b"{}", "application/json", codecs.BadRequest, "send a JSON list"),
        (b"[]", "application/json", codecs.BadRequest, "the list is empty"),
        (b"[1]\nnope\n", "application/jsonlines", codecs.BadRequest, "line 2 is not JSON"),
        (b"1", "application/x-npy", codecs.BadRequest, "not NPY"),
        (b"1", "image/png", codecs.UnsupportedMediaType, "not supported"),
    ):
        with pytest.raises(error, match=message):
            codecs.decode(body, kind)
    assert codecs.encode([0.25, 0.75], "text/csv") == (b"0.25\n0.75\n", "text/csv")
    assert json.loads(codecs.encode([0.25], "application/json")[0]) == [0.25]  # AWS's containers: a bare list
    assert json.loads(codecs.encode([0.25], "application/json", envelope=True)[0]) == {"predictions": [0.25]}
    assert codecs.encode([0.25], "application/jsonlines", envelope=True)[0] == b'{"prediction": 0.25}\n'
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
        (b'[{"Colour": "red"}]', "application/json", "record 1: unknown column.s. 'Colour'"),
        (b'{"Pclass": 1}\n{"Age": "old"}\n', "application/jsonlines", "record 2: Age: 'old' is not a number"),
        (b'[{"Fare": Infinity}]', "application/json", "record 1: Fare: 'inf' is not a finite number"),
    ):
        with pytest.raises(codecs.BadRequest, match=message):
            titanic.input_fn(body, kind)


def test_titanic_column_names_match_whatever_their_case_and_a_misspelling_or_a_twice_given_one_is_refused():
    row = '1,1,1,"Cumings, Mrs. John Bradley",female,38,1,0,PC 17599,71.2833,C85,C'
    expected = titanic.input_fn(f"{HEADER}\n{row}\n".encode(), "text/csv")
    # An all-lower-case header (as many exports write it) is the same request.
    assert titanic.input_fn(f"{HEADER.lower()}\n{row}\n".encode(), "text/csv").equals(expected)
    assert titanic.input_fn(b'[{"sex": "female", "pclass": 1}]', "application/json").loc[0, "Sex"] == "female"
    for body, kind, message in (
        (b"Sex,sex,Pclass\nmale,female,1\n", "text/csv", "the column Sex is given twice .fields 1 and 2."),
        (b'[{"Sex": "male", "SEX": "female"}]', "application/json", "the column Sex is given twice"),
        (b"Sexe,Pclass,Age\nfemale,1,38\n", "text/csv", "unknown column.s. 'Sexe' .did you mean 'Sex'.."),
        (b'[{"Pclas": 1, "Sex": "male"}]', "application/json", "did you mean 'Pclass'"),
    ):
        with pytest.raises(codecs.BadRequest, match=message):
            titanic.input_fn(body, kind)


def test_the_blend_derives_features_once_and_predicts_exactly_as_one_pipeline_per_member(titanic_csv):
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import VotingClassifier
    from sklearn.pipeline import Pipeline
    from titanic.features import REQUIRED_COLUMNS, TitanicFeatures
    from titanic.model import Hyperparameters, _logistic, _xgboost, build_pipeline

    frame = pd.read_csv(titanic_csv)
    train, held_out = frame.iloc[:700], frame.iloc[700:]
    hp = Hyperparameters(n_estimators=50)
    shared = build_pipeline(hp).fit(train[REQUIRED_COLUMNS], train["Survived"])
    # The layout before: each member derived its own features (fitted on the same rows, leave-one-out in fit).
    per_member = VotingClassifier(
        [(name, Pipeline([("features", TitanicFeatures()), *member.steps])) for name, member in
         (("xgboost", _xgboost(hp)), ("logistic", _logistic(hp)))],
        voting="soft",
    ).fit(train[REQUIRED_COLUMNS], train["Survived"])  # fmt: skip
    expected = per_member.predict_proba(held_out[REQUIRED_COLUMNS])
    assert np.array_equal(shared.predict_proba(held_out[REQUIRED_COLUMNS]), expected)
    # A passenger whose ticket and surname training never saw: group size 1, no group survival.
    stranger = held_out[REQUIRED_COLUMNS].iloc[:1].assign(Ticket="NEVER-SEEN", Name="Nobody, Mr. Unknown")
    derived = shared.named_steps["features"].transform(stranger)
    assert derived["TicketGroupSize"].tolist() == [1.0] and math.isnan(derived["GroupSurvival"].iloc[0])


@pytest.fixture(scope="module")
def titanic_model(titanic_csv):
    """A blend fitted on 700 rows (as `train` fits it), and the other 191 raw rows."""
    import pandas as pd
    from titanic.features import REQUIRED_COLUMNS
    from titanic.model import Hyperparameters, build_pipeline

    frame = pd.read_csv(titanic_csv)
    train, held_out = frame.iloc[:700], frame.iloc[700:]
    return build_pipeline(Hyperparameters(n_estimators=50)).fit(train[REQUIRED_COLUMNS], train["Survived"]), held_out


def test_the_compiled_encoders_give_exactly_the_pipelines_probabilities_or_are_not_used(titanic_model, titanic_csv):
    import numpy as np
    import pandas as pd
    from titanic.compiled import ServingModel, probe_rows
    from titanic.features import REQUIRED_COLUMNS

    pipeline, held_out = titanic_model
    served = ServingModel(pipeline)
    assert served.compiled, served.why_not
    everyone = titanic.input_fn(pd.read_csv(titanic_csv).to_csv(index=False).encode(), "text/csv")
    for frame in (everyone, held_out[REQUIRED_COLUMNS], probe_rows(), everyone.iloc[[5]]):
        assert np.array_equal(served.predict_proba(frame), pipeline.predict_proba(frame))
    # A pipeline of another shape (a weighted vote) is served through scikit-learn, and says why.
    pipeline.named_steps["model"].weights = [2, 1]
    try:
        weighted = ServingModel(pipeline)
        assert not weighted.compiled and "weighted" in weighted.why_not
        assert np.array_equal(weighted.predict_proba(everyone), pipeline.predict_proba(everyone))
    finally:
        pipeline.named_steps["model"].weights = None


def test_requests_that_arrive_together_are_predicted_together_each_as_if_alone(titanic_model, tmp_path):
    """Handler.transform_many (what a busy worker does with the requests that queued): one predict_fn call for the
    requests that decode, the same bytes as one call each; a bad request gets its own error, the others answers."""
    import joblib
    from gs_serving.handler import load

    pipeline, held_out = titanic_model
    (tmp_path / "model").mkdir()
    joblib.dump(pipeline, tmp_path / "model/model.joblib")
    # As the Titanic program marks its model (only a marked model gets the built-in handler).
    (tmp_path / "model" / MODEL_MARKER).write_text(json.dumps({"handler": "titanic.serve"}))
    env = ServingEnvironment.from_environ({"SM_MODEL_DIR": str(tmp_path / "model"), "GS_THEME": "tabular"})
    handler = load(env)
    assert handler.row_wise
    rows = held_out.drop(columns=["Survived"]).head(6)
    requests = [(rows.iloc[[i]].to_csv(index=False).encode(), "text/csv", "text/csv") for i in range(3)]
    requests.append((rows.iloc[3:6].to_json(orient="records").encode(), "application/json", "application/json"))
    requests.insert(2, (b"Pclass,Name\n", "text/csv", "text/csv"))  # a header and no rows: 400
    calls = []
    predict_fn = handler.predict_fn
    handler.predict_fn = lambda data, model: calls.append(len(data)) or predict_fn(data, model)
    together = handler.transform_many(requests)
    assert calls == [6]  # the five good requests' six rows in one call
    alone = [handler.transform(*request) if i != 2 else None for i, request in enumerate(requests)]
    for i in (0, 1, 3, 4):
        # The same answers; the numbers may differ in float64's last bits (a matrix product sums a batch in
        # another order than a single row: at most a few 1e-16).
        (body, media), (expected, expected_media) = together[i], alone[i]
        assert media == expected_media and numbers(body) == pytest.approx(numbers(expected), rel=1e-12, abs=0)
    assert isinstance(together[2], codecs.BadRequest) and "no data rows" in str(together[2])
    # A model that fails on one request's rows: the others still get their predictions.
    handler.predict_fn = lambda data, model: (
        (_ for _ in ()).throw(RuntimeError("boom")) if len(data) != 1 else predict_fn(data, model)
    )
    mixed = handler.transform_many([requests[0], requests[4], requests[1]])
    assert mixed[0] == alone[0] and mixed[2] == alone[1] and isinstance(mixed[1], RuntimeError)


def numbers(body: bytes) -> list[float]:
    text = body.decode()
    return json.loads(text)["predictions"] if text.startswith("{") else [float(line) for line in text.split()]


def test_serving_resources_are_named_under_base_job_name_uniquely(tmp_path):
    from conftest import copy_repo

    from gs_ds_env.serve.model_source import RUN_NAME, ModelSource
    from gs_ds_env.settings import load_settings

    repo = copy_repo(tmp_path / "repo", "themes", ".env.example")
    source = ModelSource(archive="model.tar.gz", theme="forecasting", py="3.11")
    settings = load_settings(repo_root=repo, base_job_name="team-a")
    names = [source.resource_name(settings, kind) for kind in ("", "local", "tr")]
    for name, kind in zip(names, ("", "local-", "tr-"), strict=True):
        assert name.startswith(f"team-a-{kind}forecasting-20") and RUN_NAME.fullmatch(name), name
    # The longest BASE_JOB_NAME settings accept (38) stays whole: the IAM policy allows only names starting with it.
    longest = load_settings(repo_root=repo, base_job_name="b" * 38)
    for kind in ("", "local", "tr"):
        name = source.resource_name(longest, kind)
        assert name.startswith("b" * 38 + "-20") and len(name) <= 63 and RUN_NAME.fullmatch(name), name
