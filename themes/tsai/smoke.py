"""Smoke test of the tsai theme: `from tsai.all import *` (the theme's real entry) and one epoch on CPU."""

import warnings

warnings.filterwarnings("ignore")  # torch.jit deprecation noise from tsai's imports

import numpy as np
import torch
from tsai.all import *  # noqa: F403 - the import users type; it must work
from tsai.all import InceptionTimePlus, TSClassification, accuracy, get_splits, get_ts_dls, ts_learner

torch.manual_seed(0)
X = np.random.default_rng(0).normal(size=(32, 1, 24)).astype("float32")
y = (X.mean(axis=(1, 2)) > 0).astype(int)
splits = get_splits(y, valid_size=0.25, random_state=0, show_plot=False)
dls = get_ts_dls(X, y, splits=splits, tfms=[None, TSClassification()], bs=8)
learn = ts_learner(dls, InceptionTimePlus, metrics=accuracy)
with learn.no_bar(), learn.no_logging():
    learn.fit_one_cycle(1, 1e-3)
import tsai  # noqa: E402

print(
    f"smoke tsai: ok (tsai {tsai.__version__}, torch {torch.__version__}, valid loss {learn.recorder.values[-1][1]:.3f})"
)
