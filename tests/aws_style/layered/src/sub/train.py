"""An entry point in a subfolder of its source dir that imports a dependency (`helpers`), with its own handlers."""

import argparse
import json
import os
from pathlib import Path

import numpy as np
from helpers import SCALE, scaled
from sklearn.linear_model import LinearRegression


def model_fn(model_dir):
    coefficients = json.loads(Path(model_dir, "model.json").read_text())
    model = LinearRegression()
    model.coef_, model.intercept_ = np.array(coefficients["coef"]), coefficients["intercept"]
    return model


def input_fn(body, content_type):
    if content_type != "application/json":
        raise ValueError(f"send JSON, not {content_type}")
    return np.array(scaled(json.loads(body)))


def output_fn(prediction, accept):
    return json.dumps({"scale": SCALE, "values": [round(float(v), 6) for v in prediction]}), "application/json"


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    args = parser.parse_args()
    x = np.array(scaled([[1.0], [2.0], [3.0], [4.0]]))
    model = LinearRegression().fit(x, [2.0, 4.0, 6.0, 8.0])
    Path(args.model_dir, "model.json").write_text(
        json.dumps({"coef": model.coef_.tolist(), "intercept": model.intercept_})
    )
    print(f"train:r2={model.score(x, [2.0, 4.0, 6.0, 8.0]):.4f}")
