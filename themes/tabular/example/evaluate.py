"""Tabular example, a processing job: a trained Titanic model and a held-out CSV in, `evaluation.json` out (the
metrics in the layout SageMaker's model registry reads: binary_classification_metrics.<name>.value):

    inv process --theme tabular --code themes/tabular/example/evaluate.py \
        --input model=runs/<training job>/model.tar.gz --input test=runs/<prepare job>/output/validation \
        --output evaluation
    python themes/tabular/example/evaluate.py --model runs/<job>/model.tar.gz --test DIR --output-dir /tmp/eval

The model is a model.tar.gz (what a training job writes) or a folder holding model.joblib. Prints
`test:<metric>=<value>` lines, which the run record keeps as the job's metrics.
"""

import argparse
import json
import sys
import tarfile
import tempfile
from pathlib import Path

import joblib
import pandas as pd
from titanic.model import evaluate

INPUT = "/opt/ml/processing/input"
OUTPUT = "/opt/ml/processing/output/evaluation"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=f"{INPUT}/model", help="model.tar.gz, or a folder holding it or model.joblib"
    )
    parser.add_argument("--test", default=f"{INPUT}/test", help="the held-out CSV, or a folder of CSV files")
    parser.add_argument("--output-dir", default=OUTPUT)
    return parser.parse_args()


def load_model(where: Path, scratch: Path):
    archives = [where] if where.is_file() and where.name.endswith(".tar.gz") else sorted(where.glob("*.tar.gz"))
    if archives:  # only model.joblib is read out of the archive: no other member is written anywhere
        with tarfile.open(archives[0]) as archive:
            try:
                member = archive.extractfile("model.joblib")
            except KeyError:
                member = None
            if member is None:
                raise ValueError(f"{archives[0]} holds no model.joblib: is it a Titanic training job's model?")
            (scratch / "model.joblib").write_bytes(member.read())
        where = scratch
    found = where / "model.joblib" if where.is_dir() else where
    if not found.is_file():
        raise ValueError(f"no model.joblib in {where}: give a training job's model.tar.gz as the input named model")
    return joblib.load(found)


def main() -> int:
    args = parse_args()
    test = Path(args.test)
    files = sorted(test.rglob("*.csv")) if test.is_dir() else [test]
    try:
        if not files or not all(path.is_file() for path in files):
            raise ValueError(f"no CSV file in {test}: give the held-out rows as the input named test")
        frame = pd.concat([pd.read_csv(path) for path in files], ignore_index=True)
        if "Survived" not in frame.columns:
            raise ValueError(f"{test} has no Survived column: the held-out rows need their labels")
        with tempfile.TemporaryDirectory() as scratch:
            model = load_model(Path(args.model), Path(scratch))
        metrics, _ = evaluate(model, frame.drop(columns=["Survived"]), frame["Survived"].astype(int))
    except (ValueError, OSError, tarfile.TarError) as error:
        print(f"evaluate failed: {error}", file=sys.stderr)
        return 1
    report = {
        "binary_classification_metrics": {
            name: {"value": round(value, 4), "standard_deviation": "NaN"} for name, value in metrics.items()
        },
        "rows": len(frame),
    }
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "evaluation.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, value in metrics.items():
        print(f"test:{name}={value:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
