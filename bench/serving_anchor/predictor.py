"""AWS's predictor.py pattern: a Flask app, the model loaded on first use by a singleton, CSV in and out."""

import io
import os

import flask
import joblib
import pandas as pd

MODEL_PATH = os.path.join("/opt/ml", "model")


class ScoringService:
    model = None

    @classmethod
    def get_model(cls):
        if cls.model is None:
            cls.model = joblib.load(os.path.join(MODEL_PATH, "model.joblib"))
        return cls.model

    @classmethod
    def predict(cls, frame):
        return cls.get_model().predict_proba(frame)[:, 1]


app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping():
    health = ScoringService.get_model() is not None
    return flask.Response(response="\n", status=200 if health else 404, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def transformation():
    if flask.request.content_type != "text/csv":
        return flask.Response(response="This predictor only supports CSV data", status=415, mimetype="text/plain")
    frame = pd.read_csv(io.StringIO(flask.request.data.decode("utf-8")))
    predictions = ScoringService.predict(frame)
    out = io.StringIO()
    pd.DataFrame({"results": predictions}).to_csv(out, header=False, index=False)
    return flask.Response(response=out.getvalue(), status=200, mimetype="text/csv")
