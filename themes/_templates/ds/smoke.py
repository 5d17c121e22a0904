"""Smoke test of theme {{THEME}}: its real imports and a tiny fit. Exit 0 and one line when the theme works."""

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(0)
frame = pd.DataFrame(rng.normal(size=(200, 3)), columns=["a", "b", "c"])
label = (frame.a + frame.b > 0).astype(int)
model = LogisticRegression().fit(frame, label)
assert model.score(frame, label) > 0.9
assert joblib.__version__
print(f"smoke {{THEME}}: ok (pandas {pd.__version__}, scikit-learn {sklearn.__version__})")
