"""Example of theme {{THEME}}: a scikit-learn classifier, the same in the kernel and as a job in the image:

    python themes/{{THEME}}/example/train.py --model-dir /tmp/model                  # in the kernel
    inv train --theme {{THEME}} --entry-point themes/{{THEME}}/example/train.py      # a job in the image
    inv train --theme {{THEME}} --entry-point themes/{{THEME}}/example/train.py --channel data=my-table.csv

With a `data` channel it reads every CSV in it (the label in the column --target); without one it uses the
breast-cancer table scikit-learn ships (no download). Prints `validation:auc=…`, writes model.joblib,
metrics.json and the handler that serves the model (code/inference.py).
"""

import argparse
import json
import os
import shutil
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", default="target", help="the label column of the data channel's CSV")
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("GS_SEED", 42)))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--data", default=os.environ.get("SM_CHANNEL_DATA"))
    return parser.parse_args()


def load(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.Series]:
    if not args.data:
        data = load_breast_cancer(as_frame=True)
        return data.data, data.target
    files = sorted(Path(args.data).glob("*.csv")) if Path(args.data).is_dir() else [Path(args.data)]
    if not files:
        raise SystemExit(f"no CSV file in the data channel {args.data}")
    frame = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    if args.target not in frame.columns:
        raise SystemExit(f"the data channel has no column {args.target!r}: name the label with --target")
    return frame.drop(columns=[args.target]).select_dtypes("number"), frame[args.target]


def main() -> None:
    args = parse_args()
    features, label = load(args)
    X_train, X_valid, y_train, y_valid = train_test_split(
        features, label, test_size=0.25, random_state=args.seed, stratify=label
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.c, max_iter=1000, random_state=args.seed))
    model.fit(X_train, y_train)
    proba = model.predict_proba(X_valid)[:, 1]
    metrics = {
        "validation:auc": round(float(roc_auc_score(y_valid, proba)), 6),
        "validation:accuracy": round(float(accuracy_score(y_valid, (proba >= 0.5).astype(int))), 6),
    }
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)
    model_dir = Path(args.model_dir)
    (model_dir / "code").mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    columns = [str(c) for c in features.columns]
    (model_dir / "metrics.json").write_text(json.dumps({"metrics": metrics, "columns": columns}, indent=2))
    # The model carries its handler (SageMaker's convention), so `inv serve --run <job>` answers.
    shutil.copy(Path(__file__).with_name("inference.py"), model_dir / "code/inference.py")
    np.savetxt(model_dir / "code/example.csv", X_valid.iloc[:2].to_numpy(), delimiter=",")  # a request to try


if __name__ == "__main__":
    main()
