"""tsai example: an InceptionTimePlus classifier on a generated series set (noisy sine vs square waves of random
frequency and phase), a seeded stratified split, eight epochs on the CPU
(about 10 s after the imports). Runs the same in the tsai kernel and in the tsai image:

    python themes/tsai/example/train.py --model-dir /tmp/model                  # in the kernel
    inv train --theme tsai --entry-point themes/tsai/example/train.py           # a job in the image

Writes model.pt (the network's weights) and metrics.json to SM_MODEL_DIR and prints `validation:accuracy=…`.
One process: the cv example shows a run over several hosts.
"""

import argparse
import json
import os
import shutil
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")  # torch.jit deprecation noise from tsai's imports

import numpy as np
import torch
from tsai.all import InceptionTimePlus, TSClassification, accuracy, get_splits, get_ts_dls, set_seed, ts_learner


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--length", type=int, default=64, help="points per series")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("GS_SEED", 42)))  # a job: the project's SEED
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    args, _ = parser.parse_known_args()  # SageMaker may pass more hyperparameters than this script uses
    if args.epochs < 1 or args.samples < 20 or args.length < 8:
        parser.error("need --epochs >= 1, --samples >= 20 and --length >= 8")
    return args


def waves(samples: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 0: sine waves, class 1: square waves; random frequency, phase and noise. Shape (samples, 1, length)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, length)
    labels = np.arange(samples) % 2
    frequency = rng.uniform(1, 4, size=(samples, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(samples, 1))
    sine = np.sin(2 * np.pi * frequency * t + phase)
    series = np.where(labels[:, None] == 1, np.sign(sine), sine) + rng.normal(0, 0.3, size=(samples, length))
    return series[:, None, :].astype("float32"), labels


def main() -> None:
    args = parse_args()
    set_seed(args.seed, reproducible=True)
    torch.set_num_threads(1)  # the same arithmetic whatever the machine's core count: the same metrics everywhere
    X, y = waves(args.samples, args.length, args.seed)
    splits = get_splits(y, valid_size=0.25, stratify=True, random_state=args.seed, shuffle=True, show_plot=False)
    dls = get_ts_dls(X, y, splits=splits, tfms=[None, TSClassification()], bs=args.batch_size, num_workers=0)
    learn = ts_learner(dls, InceptionTimePlus, metrics=accuracy, seed=args.seed)
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.epochs, args.learning_rate)
        valid_loss, valid_accuracy = learn.validate()
    metrics = {"validation:accuracy": round(float(valid_accuracy), 6), "validation:loss": round(float(valid_loss), 6)}
    for name, value in metrics.items():
        print(f"{name}={value}", flush=True)

    model_dir = Path(args.model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(learn.model.state_dict(), model_dir / "model.pt")
    shape = {"c_in": dls.vars, "c_out": dls.c, "seq_len": dls.len, "classes": [int(c) for c in dls.vocab]}
    (model_dir / "model.json").write_text(json.dumps(shape) + "\n")
    # The model carries its handler (SageMaker's convention: code/ in model.tar.gz), so `inv serve` can answer.
    (model_dir / "code").mkdir(exist_ok=True)
    shutil.copy(Path(__file__).with_name("inference.py"), model_dir / "code/inference.py")
    (model_dir / "metrics.json").write_text(
        json.dumps({"metrics": metrics, "data": f"generated waves ({args.samples} x {args.length})"}, indent=2)
    )


if __name__ == "__main__":
    main()
