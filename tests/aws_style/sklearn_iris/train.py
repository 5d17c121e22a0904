"""A decision tree on header-less CSV rows whose first column is the label, as AWS's scikit-learn examples train."""

import argparse
import os
from pathlib import Path

import joblib
import pandas as pd
from sklearn.tree import DecisionTreeClassifier


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--max_leaf_nodes", type=int, default=-1)
    parser.add_argument("--output-data-dir", type=str, default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    parser.add_argument("--model-dir", type=str, default=os.environ.get("SM_MODEL_DIR"))
    parser.add_argument("--train", type=str, default=os.environ.get("SM_CHANNEL_TRAIN"))
    args = parser.parse_args()

    frames = [pd.read_csv(path, header=None) for path in sorted(Path(args.train).glob("*.csv"))]
    data = pd.concat(frames)
    labels, features = data.iloc[:, 0], data.iloc[:, 1:]
    leaves = args.max_leaf_nodes if args.max_leaf_nodes > 1 else None
    model = DecisionTreeClassifier(max_leaf_nodes=leaves, random_state=0).fit(features, labels)
    print(f"Score: {model.score(features, labels):.4f}")
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
