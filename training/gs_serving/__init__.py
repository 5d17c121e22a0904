"""The model server of every training theme image (`docker run IMAGE serve`), on the SageMaker inference contract.

contract.py  what the container receives (port, workers, timeouts, payload limit, where the model and code are)
handler.py   the handler convention (model_fn, input_fn, predict_fn, output_fn) and where it comes from
codecs.py    CSV, JSON, JSON Lines, NPY, NPZ, LIBSVM in; JSON, CSV, NPY, JSON Lines out (Accept negotiated); a 400 for a
             body that does not decode
app.py       the ASGI app: GET /ping, POST /invocations, GET /execution-parameters
gunicorn_conf.py  gunicorn (processes, timeout, graceful drain) around uvicorn workers
worker.py    the uvicorn worker: bounded connections, a handler's os._exit never halts the server
"""
