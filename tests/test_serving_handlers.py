"""Where the serving container finds its handler and what its defaults do, in-process (the project venv has the
image's numpy, scipy, scikit-learn and XGBoost): AWS's framework conventions (handlers in the training script, only
model_fn, a Booster, NPY/NPZ/LIBSVM bodies, Accept as browsers and the SDK send it), never a silent fallback."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "training"))

from gs_serving import codecs, handler  # noqa: E402
from gs_serving.contract import MODEL_MARKER, ServingEnvironment  # noqa: E402
from gs_serving.handler import status_of  # noqa: E402

AWS_STYLE = Path(__file__).parent / "aws_style"


def environment(model_dir: Path, **variables: str) -> ServingEnvironment:
    return ServingEnvironment.from_environ({"SM_MODEL_DIR": str(model_dir), "GS_THEME": "tabular", **variables})


def train_iris(model_dir: Path) -> Path:
    """The AWS-style iris script, run as SageMaker runs it (a process with SM_* variables), on iris rows."""
    from sklearn.datasets import load_iris

    data_dir = model_dir.parent / "train"
    data_dir.mkdir(parents=True)
    iris = load_iris()
    rows = np.column_stack([iris.target, iris.data])
    np.savetxt(data_dir / "iris.csv", rows, delimiter=",", fmt="%g")
    model_dir.mkdir(parents=True)
    env = {"SM_MODEL_DIR": str(model_dir), "SM_CHANNEL_TRAIN": str(data_dir), "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, str(AWS_STYLE / "sklearn_iris/train.py")], env=env, check=True, capture_output=True)
    return model_dir


def with_code(model_dir: Path, script: Path, name: str = "train.py") -> Path:
    (model_dir / "code").mkdir(exist_ok=True)
    shutil.copy(script, model_dir / "code" / name)
    return model_dir


def test_the_training_script_with_only_model_fn_is_the_handler_and_the_defaults_answer_npy_csv_json(tmp_path):
    model_dir = with_code(train_iris(tmp_path / "model"), AWS_STYLE / "sklearn_iris/train.py")
    loaded = handler.load(environment(model_dir, SAGEMAKER_PROGRAM="train.py"))
    assert loaded.kind == "user" and loaded.source.endswith("code/train.py")
    assert loaded.defaults == ["input_fn", "predict_fn", "output_fn"]
    rows = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    expected = loaded.model.predict(rows).tolist()
    # NPY in, NPY out: what the SDK's SKLearnPredictor sends and expects by default.
    buffer = io.BytesIO()
    np.save(buffer, rows)
    body, media = loaded.transform(buffer.getvalue(), codecs.NPY, loaded.answer_type(codecs.NPY, codecs.NPY))
    assert media == codecs.NPY and np.load(io.BytesIO(body)).tolist() == expected
    # Header-less CSV in, a bare JSON list out (as AWS's scikit-learn container answers: predict(x)[0] works).
    body, media = loaded.transform(b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", codecs.CSV, codecs.JSON)
    assert media == codecs.JSON and json.loads(body) == expected
    # A flat JSON list is one instance (AWS reshapes a 1-D array to one row).
    body, _ = loaded.transform(b"[5.1, 3.5, 1.4, 0.2]", codecs.JSON, codecs.CSV)
    assert body.decode().split() == [str(expected[0])]


def test_a_subfolder_program_and_its_siblings_import_and_a_module_name_without_py_is_found(tmp_path):
    model_dir = train_iris(tmp_path / "model")
    (model_dir / "code/sub").mkdir(parents=True)
    (model_dir / "code/sub/util.py").write_text("FACTOR = 2\n")
    (model_dir / "code/sub/serve_me.py").write_text(
        "import joblib, os\nfrom util import FACTOR\n\n"
        "def model_fn(d):\n    return joblib.load(os.path.join(d, 'model.joblib'))\n\n"
        "def predict_fn(x, model):\n    return model.predict(x) * FACTOR\n"
    )
    for program in ("sub/serve_me.py", "sub/serve_me"):
        loaded = handler.load(environment(model_dir, SAGEMAKER_PROGRAM=program))
        body, _ = loaded.transform(b"5.1,3.5,1.4,0.2", codecs.CSV, codecs.JSON)
        assert json.loads(body) == [0]
    with pytest.raises(handler.ModelLoadError, match="SAGEMAKER_PROGRAM=nope.py but there is no"):
        handler.load(environment(model_dir, SAGEMAKER_PROGRAM="nope.py"))


def test_a_booster_from_model_fn_gets_a_dmatrix_for_csv_npy_and_libsvm(tmp_path):
    import xgboost as xgb

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    rng = np.random.default_rng(0)
    x = rng.random((50, 3))
    booster = xgb.train({"objective": "reg:squarederror", "seed": 0}, xgb.DMatrix(x, label=x @ [1, 2, 3]), 5)
    booster.save_model(str(model_dir / "xgboost-model"))
    with_code(model_dir, AWS_STYLE / "xgboost_booster/train.py")
    loaded = handler.load(environment(model_dir, SAGEMAKER_PROGRAM="train.py"))
    assert type(loaded.model).__name__ == "Booster"
    rows = x[:2]
    expected = booster.predict(xgb.DMatrix(rows)).tolist()
    csv_body = "\n".join(",".join(repr(float(v)) for v in row) for row in rows).encode()
    body, _ = loaded.transform(csv_body, codecs.CSV, codecs.JSON)
    assert json.loads(body) == pytest.approx(expected, rel=1e-6)
    libsvm = "\n".join(" ".join(f"{i}:{float(v)!r}" for i, v in enumerate(row)) for row in rows).encode()
    body, _ = loaded.transform(libsvm, "text/libsvm", codecs.JSON)
    assert json.loads(body) == pytest.approx(expected, rel=1e-6)
    # Without any code: the defaults load xgboost-model themselves and answer the same.
    shutil.rmtree(model_dir / "code")
    defaults = handler.load(environment(model_dir))
    assert defaults.kind == "defaults" and "xgboost-model" in defaults.source
    assert json.loads(defaults.transform(csv_body, codecs.CSV, codecs.JSON)[0]) == pytest.approx(expected, rel=1e-6)


def test_never_a_silent_fallback_to_the_titanic_handler(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a model")
    with pytest.raises(handler.ModelLoadError) as refused:
        handler.load(environment(empty))
    assert "found: notes.txt" in str(refused.value) and "model_fn" in str(refused.value)
    # A model.joblib without the Titanic program's marker is served by the defaults, never by titanic.serve.
    iris = train_iris(tmp_path / "iris")
    loaded = handler.load(environment(iris))
    assert loaded.kind == "defaults" and "titanic" not in loaded.source and loaded.csv_header is False
    # An object without predict is not a model.
    import joblib

    joblib.dump({"weights": [1, 2]}, empty / "model.joblib")
    with pytest.raises(handler.ModelLoadError, match="has no predict"):
        handler.load(environment(empty))
    # The marker names the built-in handler; a name outside the image's own is refused.
    (empty / MODEL_MARKER).write_text(json.dumps({"handler": "os"}))
    with pytest.raises(handler.ModelLoadError, match="not one of this image's"):
        handler.load(environment(empty))


def test_handler_module_mistakes_are_one_line_at_load(tmp_path):
    model_dir = train_iris(tmp_path / "model")
    code = model_dir / "code"
    code.mkdir()
    cases = {
        "from sagemaker_containers.beta.framework import encoders\n": "private to AWS's own containers",
        "import sys\nsys.exit('training ran at import')\n": "if __name__ == '__main__'",
        "def transform_fn(m, b, c, a):\n    return b\n\ndef input_fn(b, c):\n    return b\n": "keep one or the other",
        "import no_such_module_xyz\n": "'no_such_module_xyz' is not in this image",
    }
    for source, message in cases.items():
        (code / "inference.py").write_text(source)
        with pytest.raises(handler.ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
            handler.load(environment(model_dir))


def test_what_an_output_fn_may_return_and_what_a_handler_error_answers(tmp_path):
    model_dir = train_iris(tmp_path / "model")
    code = model_dir / "code"
    code.mkdir()
    results = {
        "return 3": "returned int",
        "return [1, 2]": "returned list",
        "return {1}": "returned set",
        "return 'text', 42": "content type 42",
    }
    for body, message in results.items():
        (code / "inference.py").write_text(f"def output_fn(p, accept):\n    {body}\n")
        loaded = handler.load(environment(model_dir))
        (answer,) = loaded.transform_many([(b"5.1,3.5,1.4,0.2", codecs.CSV, codecs.JSON)])
        assert isinstance(answer, handler.HandlerError) and message in str(answer) and status_of(answer) == 500
    (code / "inference.py").write_text("def output_fn(p, accept):\n    return ('class ' + str(p[0]), 'text/plain')\n")
    loaded = handler.load(environment(model_dir))
    assert loaded.accepts is None  # its own output_fn: it answers what it is asked
    assert loaded.transform(b"5.1,3.5,1.4,0.2", codecs.CSV, "text/plain") == (b"class 0", "text/plain")
    # A ValueError raised by user code is the server's 500; an exception carrying a status keeps it; sys.exit in a
    # handler is a 500 for that request (the server goes on).
    (code / "inference.py").write_text(
        "import sys\n\nclass Teapot(Exception):\n    status_code = 418\n\n"
        "def predict_fn(x, model):\n    if x[0][0] < 0:\n        raise ValueError('negative')\n"
        "    if x[0][0] > 100:\n        raise Teapot('big')\n    sys.exit(3)\n"
    )
    loaded = handler.load(environment(model_dir))
    negative, big, exits = loaded.transform_many(
        [(b"-1,0,0,0", codecs.CSV, codecs.JSON), (b"101,0,0,0", codecs.CSV, codecs.JSON), (b"1,0,0,0", codecs.CSV, codecs.JSON)]
    )  # fmt: skip
    assert (status_of(negative), status_of(big), status_of(exits)) == (500, 418, 500)
    assert "sys.exit(3)" in str(exits) and status_of(codecs.BadRequest("x")) == 400


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json, text/plain, */*", "application/json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8", "text/csv"),
        ("text/csv;q=0.5, application/json;q=0.9", "application/json"),
        ("application/x-npy", "application/x-npy"),
        ("*/*", "text/csv"),
        ("", "text/csv"),
        ("text/*", "text/csv"),
        ("application/json;q=0, text/csv", "text/csv"),
    ],
)
def test_accept_is_negotiated_as_rfc_9110_says(accept, expected):
    assert codecs.negotiate(accept, "text/csv", codecs.ENCODABLE) == expected


def test_an_accept_nothing_can_answer_is_406_and_a_custom_output_fn_gets_what_was_asked():
    with pytest.raises(codecs.NotAcceptable, match="image/png"):
        codecs.negotiate("image/png", "text/csv", codecs.ENCODABLE)
    assert codecs.negotiate("image/png, */*;q=0.1", "text/csv", None) == "image/png"


def test_bodies_aws_clients_send_decode_and_bad_ones_are_400():
    import scipy.sparse

    buffer = io.BytesIO()
    np.save(buffer, np.array([1.0, 2.0, 3.0]))
    assert codecs.decode(buffer.getvalue(), codecs.NPY).shape == (1, 3)  # one instance
    buffer = io.BytesIO()
    scipy.sparse.save_npz(buffer, scipy.sparse.csr_matrix([[0, 1.5], [2, 0]]))
    assert codecs.decode(buffer.getvalue(), codecs.NPZ).toarray().tolist() == [[0, 1.5], [2, 0]]
    assert codecs.decode(b"1 0:0.5 2:1.5\n0 1:2\n", "text/x-libsvm").toarray().tolist() == [[0.5, 0, 1.5], [0, 2, 0]]
    for body, kind, message in (
        (b"1", codecs.NPY, "not NPY"),
        (b"\x93NUMPY garbage", codecs.NPY, "not NPY"),
        (b"PK\x03\x04 broken", codecs.NPZ, "not NPZ"),
        (b"1 a:b\n", codecs.LIBSVM, "is not index:value"),
        (b"[" * 100_000 + b"]" * 100_000, codecs.JSON, "nested too deeply"),
        (b"{" * 5000, codecs.JSON, "not JSON|nested too deeply"),
    ):
        with pytest.raises(codecs.BadRequest, match=message):
            codecs.decode(body, kind)
    with pytest.raises(codecs.UnsupportedMediaType):
        codecs.decode(b"x", "image/png")
