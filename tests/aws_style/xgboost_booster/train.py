"""A regression Booster with xgb.train, its eval lines printed as XGBoost prints them, saved as `xgboost-model`."""

import argparse
import os
from pathlib import Path

import pandas as pd
import xgboost as xgb


def model_fn(model_dir):
    booster = xgb.Booster()
    booster.load_model(os.path.join(model_dir, "xgboost-model"))
    return booster


def _frame(folder):
    return pd.concat(pd.read_csv(path, header=None) for path in sorted(Path(folder).glob("*.csv")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--num_round", type=int, default=10)
    parser.add_argument("--max_depth", type=int, default=3)
    parser.add_argument("--model-dir", type=str, default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", type=str, default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", type=str, default=os.environ.get("SM_CHANNEL_VALIDATION"))
    args = parser.parse_args()

    train, validation = _frame(args.train), _frame(args.validation)
    dtrain = xgb.DMatrix(train.iloc[:, 1:], label=train.iloc[:, 0])
    dvalidation = xgb.DMatrix(validation.iloc[:, 1:], label=validation.iloc[:, 0])
    params = {"max_depth": args.max_depth, "eta": 0.3, "objective": "reg:squarederror", "seed": 0}
    booster = xgb.train(params, dtrain, args.num_round, evals=[(dtrain, "train"), (dvalidation, "validation")])
    booster.save_model(os.path.join(args.model_dir, "xgboost-model"))
