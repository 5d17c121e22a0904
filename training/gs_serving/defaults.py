"""The framework defaults, as AWS's containers and the inference toolkit have them, for what a handler module
leaves out: input_fn decodes (codecs.py), predict_fn is `model.predict(data)` (an XGBoost Booster given a DMatrix),
output_fn encodes to what Accept asks; and, beyond them, a model_fn that loads a scikit-learn-style object
(model.joblib, model.pkl) or an XGBoost model (xgboost-model, *.json, *.ubj)."""

from __future__ import annotations

from pathlib import Path

from . import codecs
from .contract import MODEL_MARKER as MARKER
from .errors import ModelLoadError

DEFAULT_PROGRAM = "inference.py"  # the handler module in the model's code/ folder when SAGEMAKER_PROGRAM names none
# Model files the default model_fn loads, in this order (xgboost-model: the name SageMaker's XGBoost uses).
DEFAULT_MODEL_FILES = ("model.joblib", "model.pkl", "xgboost-model", "*.json", "*.ubj")


def _is_booster(model) -> bool:
    return type(model).__name__ == "Booster" and type(model).__module__.startswith("xgboost")


def input_fn(body: bytes, content_type: str):
    return codecs.decode(body, content_type)


def predict_fn(data, model):
    if _is_booster(model):
        import xgboost as xgb

        if not isinstance(data, xgb.DMatrix):
            wanted = model.num_features()
            if hasattr(data, "tocsr") and 0 < data.shape[1] < wanted:  # LIBSVM: no value past the last index given
                data = data.tocsr()
                data.resize((data.shape[0], wanted))
            data = xgb.DMatrix(data)
        return model.predict(data, validate_features=False)
    if not hasattr(model, "predict"):
        raise TypeError(f"the model ({type(model).__name__}) has no predict(): define predict_fn in your handler")
    return model.predict(data)


def output_fn(prediction, accept: str):
    return codecs.encode(prediction, accept)


def model_files(model_dir: Path) -> list[Path]:
    found = []
    for pattern in DEFAULT_MODEL_FILES:
        found += sorted(p for p in model_dir.glob(pattern) if p.is_file() and p.name != MARKER)
    return found


def model_fn(model_dir: str):
    """A scikit-learn-style object (model.joblib, model.pkl) or an XGBoost model (xgboost-model, *.json, *.ubj)."""
    folder = Path(model_dir)
    candidates = model_files(folder)
    if not candidates:
        raise ModelLoadError(nothing_to_load(folder))
    path = candidates[0]
    xgboost_file = path.suffix in (".json", ".ubj") or path.name == "xgboost-model"
    model = _xgboost_model(path) if xgboost_file else _pickled(path)
    if not (hasattr(model, "predict") or _is_booster(model)):
        raise ModelLoadError(
            f"{path.name} holds a {type(model).__module__}.{type(model).__name__}, which has no predict(): "
            "give a handler with model_fn/predict_fn (code/inference.py, or the training script with --entry-point)"
        )
    return model


def _pickled(path: Path):
    try:
        if path.suffix == ".joblib":
            import joblib

            return joblib.load(path)
        import pickle

        with path.open("rb") as handle:
            return pickle.load(handle)  # noqa: S301 - the model the user trained, as AWS's containers load it
    except ModuleNotFoundError as error:
        raise ModelLoadError(
            f"{path.name} needs the package {error.name!r}, which this image does not have: train and serve in a theme "
            "that has it (inv theme.new --add ...)"
        ) from None
    except Exception as error:
        raise ModelLoadError(f"cannot load {path.name}: {type(error).__name__}: {error}") from None


def _xgboost_model(path: Path):
    try:
        import xgboost as xgb
    except ModuleNotFoundError:
        raise ModelLoadError(f"{path.name} looks like an XGBoost model, but this image has no xgboost") from None
    booster = xgb.Booster()
    try:
        booster.load_model(str(path))
        return booster
    except xgb.core.XGBoostError as error:
        if path.suffix == ".json":
            raise ModelLoadError(f"{path.name} is not an XGBoost model: {str(error).splitlines()[0]}") from None
    return _pickled(path)  # SageMaker's XGBoost of version 1.0 and earlier pickled its Booster as xgboost-model


def nothing_to_load(folder: Path) -> str:
    found = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return (
        f"nothing in {folder} can be served (found: {', '.join(found[:12]) or 'nothing'}): needed a handler with "
        f"model_fn — code/{DEFAULT_PROGRAM} in the model, or the training script (serve --run of a script run, or "
        f"--entry-point) — or a model file the defaults load: {', '.join(DEFAULT_MODEL_FILES)}"
    )
