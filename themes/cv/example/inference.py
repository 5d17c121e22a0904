"""Serving the cv example (SageMaker's handler convention): 8x8 digit images in, the digit out.

`train.py` copies itself and this file into the model's code/ folder, so the architecture comes from the script
that trained the weights. Request: JSON {"instances": [image, ...]} (or a list), JSON Lines one image a line, or CSV
one image a row; an image is 64 numbers (or 8 rows of 8), 0-16 as in scikit-learn's digits. Answer: one
{"digit": d, "probability": p} per image (CSV: the digit).
"""

from __future__ import annotations

from pathlib import Path

import torch
from gs_serving import codecs
from train import tiny_cnn

PIXELS = 64
ACCEPTS = (codecs.JSON, codecs.CSV, codecs.JSONLINES)  # what output_fn answers


def model_fn(model_dir: str):
    torch.set_num_threads(1)
    model = tiny_cnn()
    model.load_state_dict(torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def input_fn(body: bytes, content_type: str) -> torch.Tensor:
    array = codecs.decode(body, content_type)  # 400 for a body that is not numbers, 415 for another content type
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim < 2 or array[0].size != PIXELS:
        raise codecs.BadRequest(f"each image must be {PIXELS} numbers (8 rows of 8), got shape {list(array.shape)[1:]}")
    return torch.tensor(array.reshape(-1, 1, 8, 8) / 16.0, dtype=torch.float32)


def predict_fn(images: torch.Tensor, model) -> list[dict]:
    with torch.no_grad():
        probabilities = torch.softmax(model(images), dim=1)
    return [{"digit": int(p.argmax()), "probability": round(float(p.max()), 6)} for p in probabilities]


def output_fn(predictions: list[dict], accept: str):
    if codecs.media_type(accept) == codecs.CSV:
        return codecs.encode([p["digit"] for p in predictions], accept)
    return codecs.encode(predictions, accept, envelope=True)
