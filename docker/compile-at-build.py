"""Compile, at build time, what `train` and `serve` import when a container starts. The image runs with
PYTHONDONTWRITEBYTECODE (a container's writes vanish with it): what the build leaves uncompiled, every job and
endpoint compiles again at its start (~490 modules, ~0.45 s of a training container's start, before this step).

    compile-at-build.py libraries   the training toolkit and the serving stack (before the program is copied in,
                                    so that a change to training/ does not compile them again)
    compile-at-build.py program     /opt/program, and what its entry points import that is not compiled yet

A module a theme does not install (the serving stack with TOOLKIT=0, the Titanic program's pandas in the cv
theme) is skipped.
"""

import compileall
import contextlib
import importlib
import importlib.util
import sys

PROGRAM = "/opt/program"

SERVING_STACK = ("gunicorn", "uvicorn", "uvicorn_worker", "starlette")  # docker/serving.txt's packages, whole

# What the toolkit and the serving stack import from other packages as `train` and `serve` run (anyio, h11,
# httptools, uvloop, click, boto3, paramiko, ...).
LIBRARIES = (
    "sagemaker_training.cli.train",
    "sagemaker_training.entry_point",
    "sagemaker_training.environment",
    "sagemaker_training.errors",
    "sagemaker_training.runner",
    "gunicorn.app.wsgiapp",
    "gunicorn.arbiter",
    "gunicorn.glogging",
    "uvicorn_worker",
    "starlette.applications",
    "starlette.requests",
    "starlette.responses",
    "starlette.routing",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.on",
)

# The entry points of `train` (the Titanic program, script mode) and `serve` (gunicorn's config, the workers, the
# app's modules and the built-in handler).
PROGRAM_MODULES = (
    "titanic.train",
    "titanic.serve",
    "titanic.compiled",
    "gs_script_mode",
    "gs_serving.gunicorn_conf",
    "gs_serving.worker",
    "gs_serving.handler",
    "gs_serving.codecs",
)


def _compile(folder: str) -> None:
    if not compileall.compile_dir(folder, quiet=1, workers=0):
        sys.exit(f"compile-at-build: {folder} does not compile")


def _import(modules: tuple[str, ...]) -> None:
    for module in modules:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def main(part: str) -> None:
    sys.dont_write_bytecode = False
    if part == "libraries":
        for package in SERVING_STACK:
            spec = importlib.util.find_spec(package)
            for folder in spec.submodule_search_locations if spec else []:
                _compile(folder)
        _import(LIBRARIES)
    elif part == "program":
        sys.path.insert(0, PROGRAM)
        _compile(PROGRAM)
        _import(PROGRAM_MODULES)
    else:
        sys.exit(f"compile-at-build: unknown part {part!r}: libraries or program")
    print(f"compile-at-build: {part}: {len(sys.modules)} modules imported, each compiled once")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "")
