"""Smoke test of the forecasting theme: statsforecast and statsmodels on a short seasonal series."""

import numpy as np
import pandas as pd
import statsforecast
import statsmodels
from statsforecast import StatsForecast
from statsforecast.models import SeasonalNaive
from statsmodels.tsa.holtwinters import ExponentialSmoothing

periods = 48
season = np.tile([10.0, 12.0, 15.0, 11.0], periods // 4)
series = pd.DataFrame({"unique_id": "s", "ds": pd.date_range("2024-01-01", periods=periods, freq="D"), "y": season})
forecast = StatsForecast(models=[SeasonalNaive(season_length=4)], freq="D").forecast(df=series, h=4)
assert np.allclose(forecast["SeasonalNaive"].to_numpy(), season[:4]), forecast
holt = ExponentialSmoothing(season, seasonal="add", seasonal_periods=4).fit().forecast(4)
assert np.allclose(holt, season[:4], atol=0.5), holt
print(f"smoke forecasting: ok (statsforecast {statsforecast.__version__}, statsmodels {statsmodels.__version__})")
