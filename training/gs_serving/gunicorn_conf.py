"""gunicorn around uvicorn workers, from the container contract: processes, request timeout, a graceful drain on
SIGTERM that ends before SageMaker's 30 s, and the model loaded once before the workers fork."""

from gs_serving.contract import GRACEFUL_SECONDS, ServingEnvironment

_env = ServingEnvironment.from_environ()

bind = f"0.0.0.0:{_env.port}"
workers = _env.workers
worker_class = "gs_serving.worker.Worker"
preload_app = True
# A worker's heartbeat, not a request's limit (the app enforces SAGEMAKER_MODEL_SERVER_TIMEOUT per request).
timeout = max(_env.timeout_seconds + 10, 30)
graceful_timeout = GRACEFUL_SECONDS
keepalive = 75  # above the load balancer's 60 s idle timeout, so it never reuses a closed connection
accesslog = None
errorlog = "-"
loglevel = "warning"
