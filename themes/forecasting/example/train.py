"""Forecasting example: AutoETS and a seasonal-naive baseline on the AirPassengers series that statsforecast
ships, the last HORIZON months held out. Runs the same in the forecasting kernel and in the forecasting image:

    python themes/forecasting/example/train.py --model-dir /tmp/model          # in the kernel
    inv train --theme forecasting --entry-point themes/forecasting/example/train.py   # a job in the image

Writes the fitted model and metrics.json to SM_MODEL_DIR and prints `validation:mae=…` lines.
"""

import argparse
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
from statsforecast import StatsForecast
from statsforecast.models import AutoETS, SeasonalNaive
from statsforecast.utils import AirPassengersDF


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--horizon", type=int, default=12, help="months held out and forecast")
    parser.add_argument("--season-length", type=int, default=12)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("GS_SEED", 42)))  # a job: the project's SEED
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    args, _ = parser.parse_known_args()  # SageMaker may pass more hyperparameters than this script uses
    if not 1 <= args.horizon < len(AirPassengersDF) // 2:
        parser.error(f"--horizon {args.horizon} must be between 1 and {len(AirPassengersDF) // 2 - 1}")
    return args


def main() -> None:
    args = parse_args()
    np.random.seed(args.seed)
    series = AirPassengersDF
    train, holdout = series.iloc[: -args.horizon], series.iloc[-args.horizon :]
    forecaster = StatsForecast(
        models=[AutoETS(season_length=args.season_length), SeasonalNaive(season_length=args.season_length)],
        freq="MS",
        n_jobs=1,
    )
    forecaster.fit(train)
    forecast = forecaster.predict(h=args.horizon)
    actual = holdout["y"].to_numpy()
    metrics = {}
    for name in ("AutoETS", "SeasonalNaive"):
        predicted = forecast[name].to_numpy()
        metrics[f"validation:mae_{name}"] = round(float(np.mean(np.abs(predicted - actual))), 6)
        metrics[f"validation:mape_{name}"] = round(float(np.mean(np.abs(predicted - actual) / actual)), 6)
    metrics["validation:mae"] = metrics["validation:mae_AutoETS"]
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)

    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / "model.pkl", "wb") as handle:
        pickle.dump(forecaster, handle)
    (model_dir / "metrics.json").write_text(
        json.dumps({"metrics": metrics, "series": "AirPassengers", "horizon": args.horizon}, indent=2)
    )
    # The model carries its handler (SageMaker's convention: code/ in model.tar.gz), so `inv serve` can answer.
    (model_dir / "code").mkdir(exist_ok=True)
    shutil.copy(Path(__file__).with_name("inference.py"), model_dir / "code/inference.py")


if __name__ == "__main__":
    main()
