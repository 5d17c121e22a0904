"""A plain SageMaker training script: nothing from this project, only what SageMaker gives every script.

It reads the `train` (and optional `validation`) channel's CSV files, "trains" the simplest regression there is
(the mean of --target), prints its metrics as log lines, and saves the model to SM_MODEL_DIR. Strict argparse:
an argument it does not know is an error, as in most scripts written for SageMaker.

    inv train --theme tabular --entry-point examples/bring-your-script/train.py --hyperparameter target=Fare
"""

import argparse
import csv
import json
import math
import os
import statistics
import sys
from pathlib import Path


def values(folder: str, column: str) -> list[float]:
    found = []
    for path in sorted(Path(folder).glob("*.csv")):
        with path.open(newline="") as handle:
            found += [float(row[column]) for row in csv.DictReader(handle) if row.get(column, "") != ""]
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="Fare", help="the numeric column to predict")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN"))
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    args = parser.parse_args()
    if not args.train:
        sys.exit("no train channel: give the job one (--channel train=<folder or file>)")
    train = values(args.train, args.target)
    if not train:
        sys.exit(f"column {args.target!r} has no values in the train channel's CSV files")
    mean = statistics.fmean(train)
    held_out = values(args.validation, args.target) if args.validation else train
    rmse = math.sqrt(statistics.fmean((value - mean) ** 2 for value in held_out))
    print(f"train:rows={len(train)}")
    print(f"validation:rmse={rmse:.6f}")
    Path(args.model_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.model_dir) / "model.json").write_text(json.dumps({"target": args.target, "mean": mean}))


if __name__ == "__main__":
    main()
