"""The handler convention of AWS's framework containers and the SageMaker inference toolkit: `model_fn(model_dir)`,
`input_fn(body, content_type)`, `predict_fn(data, model)`, `output_fn(prediction, accept)` (or one
`transform_fn(model, body, content_type, accept)` instead of the last three), each optional; what a module leaves
out, the framework defaults do (defaults.py).

Where the handler comes from, first found wins (never a guess):
1. a user module in the code folder (/opt/ml/model/code/, where the SDK's repack puts it, or
   SAGEMAKER_SUBMIT_DIRECTORY): SAGEMAKER_PROGRAM (`train.py`, `train` or `sub/train.py`; the training script itself,
   as the scikit-learn and XGBoost containers import it) or else `inference.py`;
2. the built-in handler a model names in its marker file (MARKER, written at training: the Titanic program's
   model names `titanic.serve`), never for a model without it;
3. the framework defaults alone, when the model folder holds a model they can load (defaults.DEFAULT_MODEL_FILES);
4. otherwise the model cannot be served, and the message names what was found and what is needed.

Defaults, as AWS's containers have them: input_fn decodes CSV, JSON, NPY, NPZ, LIBSVM (codecs.py); predict_fn is
`model.predict(data)`, an XGBoost Booster given a DMatrix; output_fn encodes to what Accept asks. Beyond them:
model_fn loads a scikit-learn-style object from model.joblib / model.pkl or an XGBoost model from xgboost-model /
*.json / *.ubj when the module has none (AWS's containers ask for one).

A module may also say: `ROW_WISE = True` (each input row's prediction depends on that row alone: requests that
arrive together are predicted in one call), `CSV_HEADER = True` (its CSV input carries a header row: batch
transform keeps it off the data rows) and `ACCEPTS = (...)` (the media types its output_fn answers).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from . import codecs, defaults
from .contract import MODEL_MARKER as MARKER
from .contract import ServingEnvironment
from .defaults import DEFAULT_PROGRAM
from .errors import HandlerError, ModelLoadError

HANDLER_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn")
BUILT_IN = {"titanic.serve"}  # the handler modules a marker may name (shipped in training/)
# Packages of AWS's own containers, not on PyPI: a handler that imports them cannot run in another image.
AWS_PRIVATE_PACKAGES = (
    "sagemaker_containers",
    "sagemaker_xgboost_container",
    "sagemaker_sklearn_container",
    "sagemaker_pytorch_serving_container",
    "sagemaker_algorithm_toolkit",
)


@dataclass
class Handler:
    source: str
    kind: str  # "user" (a module of the user's), "built-in" (named by the model's marker), "defaults"
    model: Any
    input_fn: Callable
    predict_fn: Callable
    output_fn: Callable
    transform_fn: Callable | None = None
    row_wise: bool = False
    csv_header: bool = False
    accepts: tuple[str, ...] | None = codecs.ENCODABLE  # None: the handler's output_fn answers what it is asked
    defaults: list[str] = field(default_factory=list)  # the functions the defaults stand in for

    def facts(self) -> dict:
        """What `serve --check` tells the host: which handler answers, and how a batch transform must send CSV."""
        return {
            "handler": self.source,
            "kind": self.kind,
            "model": type(self.model).__module__ + "." + type(self.model).__name__,
            "defaults": self.defaults,
            "csv_header": self.csv_header,
        }

    def answer_type(self, accept_header: str | None, default: str) -> str:
        if self.accepts is not None and default not in self.accepts:
            default = codecs.JSON
        return codecs.negotiate(accept_header, default, self.accepts)

    def transform(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        if self.transform_fn is not None:
            return _response(self.transform_fn(self.model, body, content_type, accept), accept)
        return _response(self.output_fn(self.predict_fn(self.input_fn(body, content_type), self.model), accept), accept)

    def transform_many(self, requests: list[tuple[bytes, str, str]]) -> list[tuple[bytes, str] | BaseException]:
        """Each request's response or the exception it raised, in order. A row-wise handler predicts the requests
        that decoded in one predict_fn call; if that call fails, each is predicted alone, so only the request that
        breaks the model gets the error."""
        if not self.row_wise or self.transform_fn is not None or len(requests) == 1:
            return [_attempt(self.transform, *request) for request in requests]
        inputs = [_attempt(self.input_fn, body, content_type) for body, content_type, _ in requests]
        decoded = [i for i, data in enumerate(inputs) if not isinstance(data, BaseException)]
        predictions = self._predict_together([inputs[i] for i in decoded]) if len(decoded) > 1 else None
        results: list = list(inputs)
        for n, i in enumerate(decoded):
            prediction = predictions[n] if predictions is not None else _attempt(self.predict_fn, inputs[i], self.model)
            accept = requests[i][2]
            results[i] = (
                prediction
                if isinstance(prediction, BaseException)
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


def status_of(error: BaseException) -> int:
    """A handler's exception is a 500 unless it says otherwise: codecs' errors carry `status`, the inference
    toolkit's `status_code`; an UnsupportedFormatError (its name for an unknown content type) is a 415."""
    for attribute in ("status", "status_code"):
        value = getattr(error, attribute, None)
        if isinstance(value, int) and 400 <= value <= 599:
            return value
    return 415 if type(error).__name__ == "UnsupportedFormatError" else 500


def _response(result, accept: str) -> tuple[bytes, str]:
    """What an output_fn (or transform_fn) returned, as the inference toolkit takes it: the body (bytes or str), or
    (body, content type); anything else is the handler's bug, a 500 with one line."""
    body, media = result if isinstance(result, tuple) and len(result) == 2 else (result, accept)
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise HandlerError(
            f"output_fn returned {type(body).__name__}, not bytes or str (or (body, content_type)): encode the "
            "prediction in output_fn, e.g. with json.dumps"
        )
    if not isinstance(media, str) or "/" not in media:
        raise HandlerError(f"output_fn returned the content type {media!r}: give a media type such as text/csv")
    return bytes(body), media


def _attempt(function: Callable, *args):
    try:
        return function(*args)
    except SystemExit as exited:  # sys.exit() in a handler ends a request, never the server
        return HandlerError(f"the handler called sys.exit({exited.code!r}) while answering a request")
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


def defines_handler(path: Path) -> bool:
    """Whether a Python file defines any handler function at its top level (read, not imported: a training script
    runs its training when imported without a __main__ guard)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return False
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in HANDLER_FUNCTIONS
        for node in tree.body
    )


def _program_path(env: ServingEnvironment) -> Path | None:
    if env.program:
        given = Path(env.program)
        path = given if given.is_absolute() else env.code_dir / given
        for candidate in (path, path.with_name(path.name + ".py")):
            if candidate.is_file():
                return candidate
        raise ModelLoadError(f"SAGEMAKER_PROGRAM={env.program} but there is no {path} (nor {path.name}.py)")
    path = env.code_dir / DEFAULT_PROGRAM
    return path if path.is_file() else None


def _import_user_module(path: Path, code_dir: Path) -> ModuleType:
    if (path.parent / "requirements.txt").is_file():
        print(
            f"serve: note: {path.parent / 'requirements.txt'} is not installed: the image serves with its theme's "
            "locked packages (add a package to the theme to have it here)",
            file=sys.stderr,
        )
    for folder in dict.fromkeys([str(code_dir), str(path.parent)]):  # the entry point's folder first, as python runs it
        if folder not in sys.path:
            sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # `from train import ...` in the same folder finds this module
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as error:
        sys.modules.pop(path.stem, None)
        missing = (error.name or "").split(".")[0]
        if missing in AWS_PRIVATE_PACKAGES:
            raise ModelLoadError(
                f"{path} imports {missing}, a package private to AWS's own containers (not on PyPI): use the "
                "default handlers for what it provides (leave input_fn/output_fn out) or write them with numpy/json"
            ) from None
        raise ModelLoadError(
            f"cannot import {path}: the package {missing!r} is not in this image: add it to the theme "
            "(its docker/requirements.txt, then inv lock)"
        ) from None
    except SystemExit as exited:
        sys.modules.pop(path.stem, None)
        raise ModelLoadError(
            f"importing {path} ran it and it exited ({exited.code!r}): put its training under "
            "`if __name__ == '__main__':`, as AWS's containers import the script too"
        ) from None
    except Exception as error:
        sys.modules.pop(path.stem, None)
        raise ModelLoadError(f"cannot import {path}: {type(error).__name__}: {error}") from None
    return module


def _marked_module(model_dir: Path) -> tuple[ModuleType, str] | None:
    marker = model_dir / MARKER
    if not marker.is_file():
        return None
    try:
        name = json.loads(marker.read_text()).get("handler", "")
    except (OSError, ValueError, AttributeError):
        raise ModelLoadError(f"{marker} is not the JSON this project writes: retrain the model") from None
    if name not in BUILT_IN:
        raise ModelLoadError(
            f"{marker} names the handler {name!r}, which is not one of this image's ({', '.join(BUILT_IN)})"
        )
    try:
        return importlib.import_module(name), f"the built-in handler {name} (named by the model's {MARKER})"
    except ModuleNotFoundError as error:
        raise ModelLoadError(
            f"the model was made by {name.split('.')[0]}, whose handler needs {error.name!r}, not in this image: "
            "serve it in the image it trained in"
        ) from None


def load(env: ServingEnvironment) -> Handler:
    if not env.model_dir.is_dir():
        raise ModelLoadError(f"no model folder {env.model_dir}: serve a model (model.tar.gz extracted there)")
    module, source, kind = None, "", "defaults"
    path = _program_path(env)
    if path is not None:
        module, source, kind = _import_user_module(path, env.code_dir), str(path), "user"
    else:
        marked = _marked_module(env.model_dir)
        if marked:
            (module, source), kind = marked, "built-in"
    if module is None and not defaults.model_files(env.model_dir):
        raise ModelLoadError(defaults.nothing_to_load(env.model_dir))
    functions = {name: getattr(module, name, None) for name in HANDLER_FUNCTIONS}
    if functions["transform_fn"] and any(functions[name] for name in ("input_fn", "predict_fn", "output_fn")):
        raise ModelLoadError(f"{source} defines transform_fn and input_fn/predict_fn/output_fn: keep one or the other")
    stood_in = [name for name in HANDLER_FUNCTIONS[:4] if not functions[name] and not functions["transform_fn"]]
    model_fn = functions["model_fn"] or defaults.model_fn
    try:
        model = model_fn(str(env.model_dir))
    except ModelLoadError:
        raise
    except Exception as error:
        where = f"model_fn of {source}" if functions["model_fn"] else "the default model_fn"
        raise ModelLoadError(f"{where} failed: {type(error).__name__}: {error}") from None
    if module is None:
        source = f"the framework defaults ({type(model).__name__} from {defaults.model_files(env.model_dir)[0].name})"
    accepts = getattr(module, "ACCEPTS", None)
    custom_output = functions["output_fn"] or functions["transform_fn"]
    return Handler(
        source=source,
        kind=kind,
        model=model,
        input_fn=functions["input_fn"] or defaults.input_fn,
        predict_fn=functions["predict_fn"] or defaults.predict_fn,
        output_fn=functions["output_fn"] or defaults.output_fn,
        transform_fn=functions["transform_fn"],
        row_wise=getattr(module, "ROW_WISE", False) is True,
        csv_header=getattr(module, "CSV_HEADER", False) is True,
        accepts=tuple(accepts) if accepts else (None if custom_output else codecs.ENCODABLE),
        defaults=stood_in,
    )
