"""Smoke test of the theme {{THEME}}: a tiny app run headless by Streamlit's own AppTest, and a Plotly figure."""

import pandas as pd
import plotly
import plotly.express as px
import streamlit
from streamlit.testing.v1 import AppTest

APP = """
import pandas as pd
import streamlit as st
st.title("smoke")
n = st.slider("rows", 1, 10, 3)
st.dataframe(pd.DataFrame({"x": range(n)}))
"""
app = AppTest.from_string(APP).run(timeout=30)
assert not app.exception, app.exception
assert app.title[0].value == "smoke" and len(app.dataframe[0].value) == 3
figure = px.line(pd.DataFrame({"x": [1, 2, 3], "y": [2, 1, 3]}), x="x", y="y")
assert figure.to_dict()["data"][0]["y"] is not None
print(f"smoke {{THEME}}: ok (streamlit {streamlit.__version__}, plotly {plotly.__version__})")
