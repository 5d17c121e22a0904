"""The ASGI app every worker runs. The model is loaded once, when gunicorn preloads this module, before any worker
answers /ping; a model that cannot load ends the server with one line (exit 1).

A bad request is answered with its status and one line, and the server goes on: 400 a body that does not decode,
413 a body above the payload limit, 415 an unsupported content type, 406 an unsupported Accept, 500 a prediction
that raised, 504 one that ran past SAGEMAKER_MODEL_SERVER_TIMEOUT (a thread cannot be stopped: it runs to its end, and
the worker's next prediction starts after it).
"""

from __future__ import annotations

import asyncio
import json
import sys
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from . import codecs
from .contract import ContractError, ServingEnvironment
from .handler import Handler, ModelLoadError, load

DRAIN_FACTOR = 4  # an oversized body is read up to this many times the limit before the connection is dropped


def _error(status: int, message: str) -> Response:
    line = " ".join(str(message).split()) or "error"
    return PlainTextResponse(line + "\n", status_code=status)


async def _body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds `limit` bytes. An oversized body is still read (discarded, up to a bound)
    so the client, still sending, gets the 413 instead of a broken connection."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > DRAIN_FACTOR * limit:
            break
    return b"".join(chunks) if size <= limit else None


def create_app(env: ServingEnvironment, handler: Handler) -> Starlette:
    # One prediction at a time per worker process (one worker per CPU): CPU-bound predictions in parallel threads
    # would only contend for the GIL and the cores; the others wait their turn. Off the event loop, so /ping
    # answers during a long prediction and the request timeout can fire.
    predictions = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")

    async def ping(request: Request) -> Response:
        return Response(b"\n", status_code=200, media_type="text/plain")

    async def execution_parameters(request: Request) -> Response:
        parameters = {
            "MaxConcurrentTransforms": env.workers,
            "BatchStrategy": "MULTI_RECORD",
            "MaxPayloadInMB": env.max_payload_bytes // (1024 * 1024),
        }
        return Response(json.dumps(parameters), media_type=codecs.JSON)

    async def invocations(request: Request) -> Response:
        body = await _body(request, env.max_payload_bytes)
        if body is None:
            limit = env.max_payload_bytes // (1024 * 1024)
            return _error(413, f"the body is larger than {limit} MB (SAGEMAKER_MAX_PAYLOAD_IN_MB): send fewer rows")
        content_type = codecs.media_type(request.headers.get("content-type")) or codecs.JSON
        accept = codecs.media_type(request.headers.get("accept"))
        if accept in ("", "*/*"):
            accept = env.default_accept or content_type
        try:
            future = asyncio.get_running_loop().run_in_executor(
                predictions, handler.transform, body, content_type, accept
            )
            output, media = await asyncio.wait_for(future, timeout=env.timeout_seconds)
        except (codecs.BadRequest, codecs.UnsupportedMediaType, codecs.NotAcceptable) as error:
            return _error(error.status, error)
        except asyncio.TimeoutError:
            return _error(
                504, f"the prediction took longer than SAGEMAKER_MODEL_SERVER_TIMEOUT={env.timeout_seconds} s"
            )
        except Exception as error:
            if type(error).__name__ == "UnsupportedFormatError":  # the inference toolkit's name, raised by user code
                return _error(415, error)
            status = 400 if isinstance(error, ValueError) else 500
            return _error(status, f"{type(error).__name__}: {error}")
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
