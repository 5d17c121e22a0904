"""The handler convention of SageMaker's inference toolkit: `model_fn(model_dir)`, `input_fn(body, content_type)`,
`predict_fn(data, model)`, `output_fn(prediction, accept)` (or one `transform_fn(model, body, content_type,
accept)`), each optional but model_fn.

Where the functions come from, first found wins:
1. the user's module: SAGEMAKER_PROGRAM (default inference.py) in the code folder, which is /opt/ml/model/code/
   (where the SDK's Model(entry_point=..., source_dir=...) repacks it) or SAGEMAKER_SUBMIT_DIRECTORY;
2. the theme's built-in model (the tabular image: the Titanic model, titanic.serve);
3. otherwise the model cannot load, and the message says how to give the image code.

A module that sets `ROW_WISE = True` says its predict_fn maps each input row to its own prediction, independently
of the other rows (a fitted scikit-learn or XGBoost model does): requests that arrive together are then predicted
in one call (their input_fn results concatenated, the predictions split back), which costs about one request.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from . import codecs
from .contract import ServingEnvironment

BUILT_IN = {"tabular": "titanic.serve"}
DEFAULT_PROGRAM = "inference.py"


class ModelLoadError(RuntimeError):
    """The model or its handler cannot be loaded; the message is the whole story (the container exits 1)."""


def _default_input_fn(body: bytes, content_type: str):
    return codecs.decode(body, content_type)


def _default_predict_fn(data, model):
    if not hasattr(model, "predict"):
        raise TypeError(f"the model ({type(model).__name__}) has no predict(): define predict_fn in your handler")
    return model.predict(data)


def _default_output_fn(prediction, accept: str):
    return codecs.encode(prediction, accept)


@dataclass
class Handler:
    source: str
    model: Any
    input_fn: Callable
    predict_fn: Callable
    output_fn: Callable
    transform_fn: Callable | None = None
    row_wise: bool = False

    def transform(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        if self.transform_fn is not None:
            return _response(self.transform_fn(self.model, body, content_type, accept), accept)
        return _response(self.output_fn(self.predict_fn(self.input_fn(body, content_type), self.model), accept), accept)

    def transform_many(self, requests: list[tuple[bytes, str, str]]) -> list[tuple[bytes, str] | Exception]:
        """Each request's response or the exception it raised, in order. A row-wise handler predicts the requests
        that decoded in one predict_fn call; if that call fails, each is predicted alone, so only the request that
        breaks the model gets the error."""
        if not self.row_wise or self.transform_fn is not None or len(requests) == 1:
            return [_attempt(self.transform, *request) for request in requests]
        inputs = [_attempt(self.input_fn, body, content_type) for body, content_type, _ in requests]
        decoded = [i for i, data in enumerate(inputs) if not isinstance(data, Exception)]
        predictions = self._predict_together([inputs[i] for i in decoded]) if len(decoded) > 1 else None
        results: list = list(inputs)
        for n, i in enumerate(decoded):
            prediction = predictions[n] if predictions is not None else _attempt(self.predict_fn, inputs[i], self.model)
            accept = requests[i][2]
            results[i] = (
                prediction
                if isinstance(prediction, Exception)
                else _attempt(lambda p=prediction, a=accept: _response(self.output_fn(p, a), a))
            )
        return results

    def _predict_together(self, inputs: list) -> list | None:
        """The predictions of each input from one predict_fn call on all of them, or None (predict them alone)."""
        combined = _concatenate(inputs)
        if combined is None:
            return None
        try:
            predicted = self.predict_fn(combined, self.model)
        except Exception:
            return None
        if len(predicted) != sum(len(data) for data in inputs):
            return None
        out, start = [], 0
        for data in inputs:
            end = start + len(data)
            out.append(predicted.iloc[start:end] if hasattr(predicted, "iloc") else predicted[start:end])
            start = end
        return out


def _response(result, accept: str) -> tuple[bytes, str]:
    body_out, media = result if isinstance(result, tuple) else (result, accept)
    if isinstance(body_out, str):
        body_out = body_out.encode()
    return bytes(body_out), media


def _attempt(function: Callable, *args):
    try:
        return function(*args)
    except Exception as error:  # the request's own failure, answered by the app with its status
        return error


def _concatenate(inputs: list):
    """Inputs of one kind (DataFrames, arrays or lists) as one, row after row; None for anything else."""
    first = inputs[0]
    if all(type(data) is type(first) for data in inputs):
        if hasattr(first, "iloc") and hasattr(first, "columns"):
            import pandas as pd

            if all(list(data.columns) == list(first.columns) for data in inputs):
                return pd.concat(inputs, ignore_index=True)
        elif type(first).__name__ == "ndarray" and all(data.shape[1:] == first.shape[1:] for data in inputs):
            import numpy as np

            return np.concatenate(inputs)
        elif isinstance(first, list):
            return [row for data in inputs for row in data]
    return None


def _user_module(env: ServingEnvironment) -> ModuleType | None:
    program = env.program or DEFAULT_PROGRAM
    path = Path(program) if Path(program).is_absolute() else env.code_dir / program
    if not path.is_file():
        if env.program:
            raise ModelLoadError(f"SAGEMAKER_PROGRAM={env.program} but {path} does not exist")
        return None
    if (path.parent / "requirements.txt").is_file():
        print(
            f"serve: note: {path.parent / 'requirements.txt'} is not installed: the image serves with its theme's "
            "locked packages (add a package to the theme to have it here)",
            file=sys.stderr,
        )
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise ModelLoadError(f"cannot import {path}: {type(error).__name__}: {error}") from None
    return module


def load(env: ServingEnvironment) -> Handler:
    module = _user_module(env)
    source = f"{env.code_dir / (env.program or DEFAULT_PROGRAM)}" if module else ""
    if module is None and env.theme in BUILT_IN:
        module = importlib.import_module(BUILT_IN[env.theme])
        source = f"the {env.theme} image's built-in model ({BUILT_IN[env.theme]})"
    if module is None:
        example = f"themes/{env.theme}/example/inference.py" if env.theme else "an inference.py"
        raise ModelLoadError(
            f"the {env.theme or 'this'} image has no built-in model server: put an {DEFAULT_PROGRAM} with model_fn "
            f"(and input_fn/predict_fn/output_fn) in the model's code/ folder or name it with SAGEMAKER_PROGRAM, "
            f"e.g. {example}"
        )
    model_fn = getattr(module, "model_fn", None)
    if model_fn is None:
        raise ModelLoadError(f"{source} defines no model_fn(model_dir)")
    if not env.model_dir.is_dir():
        raise ModelLoadError(f"no model folder {env.model_dir}: serve a model (model.tar.gz extracted there)")
    try:
        model = model_fn(str(env.model_dir))
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"model_fn of {source} failed: {type(error).__name__}: {error}") from None
    return Handler(
        source=source,
        model=model,
        input_fn=getattr(module, "input_fn", _default_input_fn),
        predict_fn=getattr(module, "predict_fn", _default_predict_fn),
        output_fn=getattr(module, "output_fn", _default_output_fn),
        transform_fn=getattr(module, "transform_fn", None),
        row_wise=getattr(module, "ROW_WISE", False) is True,
    )
