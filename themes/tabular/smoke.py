"""Smoke test of the tabular theme: its real imports and a tiny fit. Run by the kernel script (before the new
venv replaces the old one) and by the image build. Exit 0 and one line when the theme works."""

import io

import joblib
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import sklearn
import xgboost
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

rng = np.random.default_rng(0)
frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
label = (frame.a + frame.b > 0).astype(int)
booster = xgboost.XGBClassifier(n_estimators=10, max_depth=2).fit(frame, label)
linear = LogisticRegression().fit(frame, label)
auc = roc_auc_score(label, (booster.predict_proba(frame)[:, 1] + linear.predict_proba(frame)[:, 1]) / 2)
assert auc > 0.9, auc
joblib.dump(linear, io.BytesIO())
plt.plot(frame.a)
plt.savefig(io.BytesIO(), format="png")
print(
    f"smoke tabular: ok (pandas {pd.__version__}, scikit-learn {sklearn.__version__}, xgboost {xgboost.__version__}, "
    f"auc {auc:.3f})"
)
