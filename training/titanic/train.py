"""SageMaker bring-your-own-container training entry point (`docker run IMAGE train`).

Contract (https://docs.aws.amazon.com/sagemaker/latest/dg/your-algorithms-training-algo-dockerfile.html):
  <root>/input/config/hyperparameters.json   all values are strings
  <root>/input/data/<channel>/*.csv          channels `train` and `validation`
  <root>/model/                              model.joblib + metrics.json + gs-ds-env-model.json (the marker naming
                                             its handler, titanic.serve); SageMaker tars it to model.tar.gz
  <root>/output/data/                        metrics and plots (output.tar.gz)
  <root>/output/failure                      the reason, when training fails
<root> is /opt/ml in the container; set SM_ROOT or --sm-root to run the same program anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

import pandas as pd

from .features import REQUIRED_COLUMNS, TARGET
from .model import MODELS, Hyperparameters, build_pipeline, evaluate, save_plots

CHANNELS = ("train", "validation")


class TrainingError(RuntimeError):
    """A failure whose message is the whole story (written to output/failure)."""


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message):
        raise TrainingError(f"bad hyperparameter or argument: {message}")


def argument_parser() -> argparse.ArgumentParser:
    defaults = Hyperparameters()
    parser = _RaisingParser(prog="train", description="Train the Titanic survival model.")
    parser.add_argument("--model", choices=MODELS, default=defaults.model)
    parser.add_argument("--n_estimators", type=int, default=defaults.n_estimators)
    parser.add_argument("--max_depth", type=int, default=defaults.max_depth)
    parser.add_argument("--learning_rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("GS_SEED", defaults.seed)))  # a job: SEED
    parser.add_argument("--sm-root", default=os.environ.get("SM_ROOT", "/opt/ml"), help="the /opt/ml root")
    return parser


def parse_arguments(argv: list[str], hyperparameters: dict[str, str]) -> argparse.Namespace:
    """Hyperparameters (strings, from SageMaker) go through the same parser as the command line; argv wins."""
    parser = argument_parser()
    known = {action.dest for action in parser._actions}
    from_file = []
    for key, value in hyperparameters.items():
        if key.startswith("sagemaker_"):
            continue  # the SDK's own bookkeeping keys
        if key not in known or key in {"sm_root", "help"}:
            raise TrainingError(
                f"unknown hyperparameter {key!r}; accepted: model ({', '.join(MODELS)}), n_estimators, max_depth, learning_rate, seed"
            )
        # The SDK JSON-encodes values; a plain string may also arrive unquoted.
        try:
            decoded = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            decoded = value
        from_file += [f"--{key}", str(decoded)]
    return parser.parse_args(from_file + argv)


def read_hyperparameters(root: Path) -> dict[str, str]:
    path = root / "input/config/hyperparameters.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text() or "{}")


def read_channel(folder: Path, channel: str) -> pd.DataFrame:
    files = sorted(p for p in folder.rglob("*.csv") if p.is_file()) if folder.is_dir() else []
    causes = (
        f"check the channel name is {channel!r} in fit({{...}}), that its S3 URI or file:// path points at the "
        "folder holding the CSV, and that the execution role may read it"
    )
    if not files:
        raise TrainingError(f"channel {channel!r} is empty or missing: no CSV under {folder}; {causes}")
    frames = [pd.read_csv(path) for path in files]
    frame = pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise TrainingError(
            f"channel {channel!r} has CSV files but no rows ({', '.join(p.name for p in files)}); {causes}"
        )
    missing = [c for c in REQUIRED_COLUMNS + [TARGET] if c not in frame.columns]
    if missing:
        raise TrainingError(f"channel {channel!r} lacks the Titanic columns {missing}; is it the Kaggle train.csv?")
    return frame


def train(root: Path, args: argparse.Namespace) -> dict[str, float]:
    """The bring-your-own-container layout under `root` (/opt/ml in the container)."""
    channels = {channel: root / "input/data" / channel for channel in CHANNELS}
    return fit(channels, root / "model", root / "output/data", args)


def fit(channels: dict[str, Path], model_dir: Path, output_dir: Path, args: argparse.Namespace) -> dict[str, float]:
    """Train on the `train` and `validation` CSV folders; the model and metrics.json go to `model_dir`, metrics and
    pictures to `output_dir`. The image's default program and the script-mode example both call this."""
    started = time.time()
    hp = Hyperparameters(args.model, args.n_estimators, args.max_depth, args.learning_rate, args.seed)
    train_frame, validation_frame = (read_channel(Path(channels[channel]), channel) for channel in CHANNELS)
    X_train, y_train = train_frame.drop(columns=[TARGET]), train_frame[TARGET].astype(int)
    X_val, y_val = validation_frame.drop(columns=[TARGET]), validation_frame[TARGET].astype(int)
    print(f"training {hp.model} on {len(X_train)} rows, validating on {len(X_val)} rows: {hp}", flush=True)

    pipeline = build_pipeline(hp).fit(X_train, y_train)
    train_metrics, _ = evaluate(pipeline, X_train, y_train)
    validation_metrics, proba = evaluate(pipeline, X_val, y_val)

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    import joblib

    joblib.dump(pipeline, model_dir / "model.joblib")
    from gs_serving.contract import MODEL_MARKER

    # The model says it is the Titanic program's: the image's built-in handler serves it, and no other model.
    marker = {"handler": "titanic.serve", "program": "titanic", "model": hp.model}
    (model_dir / MODEL_MARKER).write_text(json.dumps(marker) + "\n")
    metrics = {f"train:{k}": round(v, 4) for k, v in train_metrics.items()}
    metrics |= {f"validation:{k}": round(v, 4) for k, v in validation_metrics.items()}
    document = {
        "metrics": metrics,
        "hyperparameters": hp.__dict__,
        "rows": {"train": len(X_train), "validation": len(X_val)},
        "training_seconds": round(time.time() - started, 3),
    }
    (model_dir / "metrics.json").write_text(json.dumps(document, indent=2) + "\n")
    shutil.copy(model_dir / "metrics.json", output_dir / "metrics.json")
    save_plots(y_val, proba, output_dir)
    for name, value in metrics.items():
        print(f"{name}={value:.4f}", flush=True)  # one stable line per metric, for SageMaker metric definitions
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # SageMaker runs `docker run IMAGE train`: the word `train` may arrive as the first argument.
    if argv[:1] == ["train"]:
        argv = argv[1:]
    root = Path(os.environ.get("SM_ROOT", "/opt/ml"))
    try:
        root = Path(argument_parser().parse_known_args(argv)[0].sm_root)
        args = parse_arguments(argv, read_hyperparameters(root))
        train(root, args)
        return 0
    except Exception as error:  # noqa: BLE001 - every failure must reach output/failure
        reason = str(error) if isinstance(error, TrainingError) else f"{type(error).__name__}: {error}"
        failure = root / "output/failure"
        try:
            failure.parent.mkdir(parents=True, exist_ok=True)
            failure.write_text(reason + "\n\n" + traceback.format_exc())
        except OSError:
            pass
        print(f"training failed: {reason}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
