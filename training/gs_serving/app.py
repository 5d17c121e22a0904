"""The ASGI app every worker runs. The model is loaded once, when gunicorn preloads this module, before any worker
answers /ping; a model that cannot load ends the server with one line (exit 1).

A bad request is answered with its status and one line, and the server goes on: 400 a body that does not decode,
408 a body that does not arrive within GS_BODY_TIMEOUT_SECONDS, 413 a body above the payload limit, 415 an
unsupported content type, 406 an Accept nothing can answer, 500 a handler that raised (unless its exception carries
a status, as the inference toolkit's errors do), 504 a prediction that ran past SAGEMAKER_MODEL_SERVER_TIMEOUT.

A thread cannot be stopped: a worker whose prediction ran past the timeout answers 503 to /ping and to the requests
waiting behind it, then exits, and gunicorn forks a fresh one from the loaded model. Requests that arrive while a
prediction runs are predicted together (Batcher).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from . import codecs
from .contract import ContractError, ServingEnvironment
from .handler import Handler, ModelLoadError, load, status_of

DRAIN_FACTOR = 4  # an oversized body is read up to this many times the limit before the connection is dropped
MAX_BATCH = 64  # requests predicted together at most (each within the payload limit)
REPLACE_AFTER_SECONDS = 0.5  # a stuck worker exits this long after answering, so its answers leave first


class WorkerReplaced(RuntimeError):
    status = 503


def _error(status: int, message: str, close: bool = False) -> Response:
    line = " ".join(str(message).split()) or "error"
    return PlainTextResponse(line + "\n", status_code=status, headers={"Connection": "close"} if close else None)


class BodyTooLarge(Exception):
    pass


async def _body(request: Request, limit: int) -> bytes:
    """The body, or BodyTooLarge past `limit` bytes. An oversized body is still read (discarded, up to a bound) so
    the client, still sending, gets the 413 instead of a broken connection."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_FACTOR * limit:
            break
    if size > limit:
        raise BodyTooLarge
    return b"".join(chunks)


class Batcher:
    """One prediction at a time per worker process (one worker per CPU): CPU-bound predictions in parallel threads
    would only contend for the GIL and the cores. Off the event loop, so /ping answers during a long prediction and
    the request timeout can fire. The requests that arrive while a prediction runs wait, then go together
    (Handler.transform_many: one predict_fn call for a row-wise model), so a busy worker catches up instead of
    queueing: a worker holding more keep-alive connections than another is not slower for it."""

    def __init__(self, handler: Handler, max_requests: int = MAX_BATCH) -> None:
        self.handler = handler
        self.max_requests = max_requests
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.waiting: list[tuple[tuple[bytes, str, str], asyncio.Future]] = []
        self.running = False
        self.stuck = False
        self.task: asyncio.Task | None = None

    async def transform(self, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        if self.stuck:
            raise WorkerReplaced("this worker is being replaced (a prediction ran past the timeout): retry")
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self.waiting.append(((body, content_type, accept), answer))
        if not self.running:
            self.running = True
            self.task = loop.create_task(self._run())  # referenced: the loop keeps only weak references to tasks
        return await answer

    def replace_worker(self) -> None:
        """A prediction ran past its timeout and still holds the only prediction thread: answer what waits with a
        503, then end this worker (gunicorn starts another from the loaded model)."""
        if self.stuck:
            return
        self.stuck = True
        for _, answer in self.waiting:
            if not answer.done():
                answer.set_exception(
                    WorkerReplaced("this worker is being replaced (a prediction ran past the timeout): retry")
                )
        self.waiting = []
        print(
            f"serve: worker {os.getpid()}: a prediction ran past the timeout; replacing the worker",
            file=sys.stderr,
            flush=True,
        )
        asyncio.get_running_loop().call_later(REPLACE_AFTER_SECONDS, os._exit, 0)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[: self.max_requests], self.waiting[self.max_requests :]
                try:
                    results = await loop.run_in_executor(
                        self.thread, self.handler.transform_many, [request for request, _ in batch]
                    )
                except BaseException as error:  # transform_many answers per request; this is a bug of its own
                    results = [RuntimeError(f"{type(error).__name__}: {error}")] * len(batch)
                for (_, answer), result in zip(batch, results, strict=True):
                    if answer.done():  # its client timed out (504) or went away
                        continue
                    if isinstance(result, BaseException):
                        answer.set_exception(result)
                    else:
                        answer.set_result(result)
        finally:
            self.running = False


def create_app(env: ServingEnvironment, handler: Handler) -> Starlette:
    predictions = Batcher(handler)

    async def ping(request: Request) -> Response:
        if predictions.stuck:
            return _error(503, "this worker is being replaced (a prediction ran past the timeout)")
        return Response(b"\n", status_code=200, media_type="text/plain")

    async def execution_parameters(request: Request) -> Response:
        parameters = {
            "MaxConcurrentTransforms": env.workers,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": env.max_payload_bytes // (1024 * 1024),
        }
        return Response(json.dumps(parameters), media_type=codecs.JSON)

    async def invocations(request: Request) -> Response:
        try:
            body = await asyncio.wait_for(_body(request, env.max_payload_bytes), timeout=env.body_timeout_seconds)
        except BodyTooLarge:
            limit = env.max_payload_bytes // (1024 * 1024)
            return _error(413, f"the body is larger than {limit} MB (SAGEMAKER_MAX_PAYLOAD_IN_MB): send fewer rows")
        except asyncio.TimeoutError:
            return _error(
                408,
                f"the request body did not arrive within {env.body_timeout_seconds} s (GS_BODY_TIMEOUT_SECONDS)",
                True,
            )
        except ClientDisconnect:
            return _error(400, "the client went away before sending the whole body", True)
        content_type = codecs.media_type(request.headers.get("content-type")) or codecs.JSON
        try:
            accept = handler.answer_type(request.headers.get("accept"), env.default_accept or content_type)
            output, media = await asyncio.wait_for(
                predictions.transform(body, content_type, accept), timeout=env.timeout_seconds
            )
        except asyncio.TimeoutError:
            predictions.replace_worker()
            return _error(
                504, f"the prediction took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT={env.timeout_seconds} s"
            )
        except Exception as error:
            status = status_of(error)
            known = isinstance(error, (codecs.BadRequest, codecs.UnsupportedMediaType, codecs.NotAcceptable))
            return _error(status, error if known or status != 500 else f"{type(error).__name__}: {error}")
        return Response(output, media_type=media)

    routes = [
        Route("/ping", ping, methods=["GET"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/execution-parameters", execution_parameters, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _load() -> Starlette:
    try:
        env = ServingEnvironment.from_environ()
        handler = load(env)
    except (ContractError, ModelLoadError) as error:
        print(f"serve: cannot start: {error}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    print(f"serve: model loaded from {env.model_dir} with {handler.source}", file=sys.stderr, flush=True)
    return create_app(env, handler)


app = _load()
