"""Serving the tsai example (SageMaker's handler convention): a series in, its class out (0 sine, 1 square).

`train.py` writes model.json (the network's shape) beside model.pt and copies this file into the model's code/
folder. Request: JSON {"instances": [series, ...]} (or a list), JSON Lines one series a line, or CSV one series a
row; a series is `seq_len` numbers. Answer: one {"class": c, "probability": p} per series (CSV: the class).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")  # torch.jit deprecation noise from tsai's imports

import torch  # noqa: E402
from gs_serving import codecs  # noqa: E402
from tsai.all import InceptionTimePlus  # noqa: E402

ACCEPTS = (codecs.JSON, codecs.CSV, codecs.JSONLINES)  # what output_fn answers


def model_fn(model_dir: str):
    torch.set_num_threads(1)
    shape = json.loads((Path(model_dir) / "model.json").read_text())
    model = InceptionTimePlus(shape["c_in"], shape["c_out"], seq_len=shape["seq_len"])
    model.load_state_dict(torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True))
    model.eval()
    model.shape = shape
    return model


def input_fn(body: bytes, content_type: str):
    return codecs.decode(body, content_type)


def predict_fn(series, model) -> list[dict]:
    if series.ndim == 1:
        series = series[None, :]
    length = model.shape["seq_len"]
    if series.ndim != 2 or series.shape[1] != length:
        raise codecs.BadRequest(f"each series must have {length} numbers, got shape {list(series.shape)[1:]}")
    with torch.no_grad():
        probabilities = torch.softmax(model(torch.tensor(series[:, None, :], dtype=torch.float32)), dim=1)
    classes = model.shape["classes"]
    return [{"class": classes[int(p.argmax())], "probability": round(float(p.max()), 6)} for p in probabilities]


def output_fn(predictions: list[dict], accept: str):
    if codecs.media_type(accept) == codecs.CSV:
        return codecs.encode([p["class"] for p in predictions], accept)
    return codecs.encode(predictions, accept, envelope=True)
