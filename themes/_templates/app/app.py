"""The app of theme {{THEME}}: what its image runs (`inv app`). A seeded random walk and its rolling mean."""

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

st.set_page_config(page_title="{{THEME}}")
st.title("Random walk")
steps = st.slider("steps", 50, 2000, 500)
window = st.slider("rolling window", 2, 100, 20)
seed = st.number_input("seed", value=42, step=1)
walk = np.random.default_rng(int(seed)).standard_normal(steps).cumsum()
frame = pd.DataFrame({"step": range(steps), "value": walk})
frame["rolling mean"] = frame["value"].rolling(window).mean()
st.plotly_chart(px.line(frame, x="step", y=["value", "rolling mean"]))
st.caption(f"final value {walk[-1]:.2f}")
