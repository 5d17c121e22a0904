"""Example of theme {{THEME}}: a scikit-learn model whose parameters and metrics are tracked with MLflow, the
same in the kernel and as a job in the image:

    python themes/{{THEME}}/example/train.py --model-dir /tmp/model                  # in the kernel
    inv train --theme {{THEME}} --entry-point themes/{{THEME}}/example/train.py      # a job in the image

Tracking goes to MLFLOW_TRACKING_URI when set (e.g. a SageMaker managed MLflow server, passed with
--hyperparameter tracking-uri=…), else to a file store in the job's output (runs/<job>/output.tar.gz: mlruns/).
Prints `validation:auc=…` for the job's metric definitions; writes model.joblib and its handler (code/).
"""

import argparse
import json
import os
import shutil
from pathlib import Path

import joblib
import mlflow
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-estimators", type=int, default=200)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("GS_SEED", 42)))
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--experiment", default="{{THEME}}-example")
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--output-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR", "/tmp/{{THEME}}-output"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not args.tracking_uri:  # a file store in the job's output: MLflow 3 wants that opt-in (no server needed)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(args.tracking_uri or (Path(args.output_dir).resolve() / "mlruns").as_uri())
    mlflow.set_experiment(args.experiment)
    data = load_breast_cancer(as_frame=True)
    X_train, X_valid, y_train, y_valid = train_test_split(
        data.data, data.target, test_size=0.25, random_state=args.seed, stratify=data.target
    )
    params = {"n_estimators": args.n_estimators, "max_depth": args.max_depth, "random_state": args.seed}
    with mlflow.start_run() as run:
        mlflow.log_params(params)
        model = RandomForestClassifier(n_jobs=1, **params).fit(X_train, y_train)
        metrics = {"validation:auc": round(float(roc_auc_score(y_valid, model.predict_proba(X_valid)[:, 1])), 6)}
        mlflow.log_metrics({name.replace(":", "_"): value for name, value in metrics.items()})
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)
    print(f"mlflow: run {run.info.run_id} in {mlflow.get_tracking_uri()}", flush=True)
    model_dir = Path(args.model_dir)
    (model_dir / "code").mkdir(parents=True, exist_ok=True)
    joblib.dump(model, model_dir / "model.joblib")
    (model_dir / "metrics.json").write_text(json.dumps({"metrics": metrics, "mlflow_run": run.info.run_id}, indent=2))
    shutil.copy(Path(__file__).with_name("inference.py"), model_dir / "code/inference.py")


if __name__ == "__main__":
    main()
