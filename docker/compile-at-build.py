"""Compile, at build time, what `train` and `serve` import when a container starts: the image's own program
(/opt/program), the serving stack whole (small, and it imports some modules only once it runs) and the modules of
the toolkit and the training program's libraries that the entry points import.

The image runs with PYTHONDONTWRITEBYTECODE (a container's writes vanish with it), so what the build leaves
uncompiled is compiled again by every job and endpoint that starts: ~400 modules, ~0.3 s, before this step.
A module a theme does not install (the Titanic program's pandas in the cv theme) is skipped.
"""

import compileall
import contextlib
import importlib
import importlib.util
import sys

PROGRAM = "/opt/program"

SERVING_STACK = ("gunicorn", "uvicorn", "uvicorn_worker", "starlette")  # docker/serving.txt's packages

# The entry points of `train` (the Titanic program, script mode through the training toolkit) and `serve` (gunicorn,
# its uvicorn workers, the app's modules and the built-in handler).
STARTED_BY_TRAIN_AND_SERVE = (
    "titanic.train",
    "titanic.serve",
    "titanic.compiled",
    "gs_script_mode",
    "sagemaker_training.cli.train",
    "gs_serving.gunicorn_conf",
    "gs_serving.worker",
    "gs_serving.handler",
    "gs_serving.codecs",
    # and what the serving stack's running parts import from other packages (anyio, h11, httptools, uvloop, click)
    "gunicorn.app.wsgiapp",
    "gunicorn.arbiter",
    "gunicorn.glogging",
    "starlette.applications",
    "starlette.requests",
    "starlette.responses",
    "starlette.routing",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.loops.uvloop",
    "uvicorn.lifespan.on",
)


def main() -> None:
    sys.dont_write_bytecode = False
    sys.path.insert(0, PROGRAM)
    folders = [PROGRAM]
    for package in SERVING_STACK:
        spec = importlib.util.find_spec(package)
        folders += spec.submodule_search_locations if spec else []  # absent where the theme has no serving stack
    for folder in folders:
        if not compileall.compile_dir(folder, quiet=1, workers=0):
            sys.exit(f"compile-at-build: {folder} does not compile")
    for module in STARTED_BY_TRAIN_AND_SERVE:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    print(f"compile-at-build: {', '.join(folders)} and {len(sys.modules)} imported modules compiled")


if __name__ == "__main__":
    main()
