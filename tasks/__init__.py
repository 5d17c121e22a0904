"""Invoke tasks, one module per namespace (`inv --list`): each task parses its arguments and calls gs_ds_env.

kernel.py, theme.py, image.py, workspace.py, data.py, job.py, pipeline.py, model.py, serve.py, endpoint.py, aws.py,
ops.py; common.py turns the
package's errors into one line and an exit code. Settings come from .env (gs_ds_env.settings)."""

from __future__ import annotations

import sys
from pathlib import Path

# invoke puts this package's own folder on sys.path; the project that holds it must come first instead, so that
# `inv` run in a copy of the project imports that copy's gs_ds_env (and `tasks/data.py` never shadows a `data`).
_PACKAGE, _PROJECT = str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)
sys.path[:] = [_PROJECT] + [entry for entry in sys.path if entry not in (_PACKAGE, _PROJECT)]

from invoke import Collection  # noqa: E402

from . import aws, data, endpoint, image, job, kernel, model, ops, pipeline, serve, theme, workspace  # noqa: E402
from .common import clear_errors  # noqa: E402

NAMESPACES = [
    module.namespace
    for module in (kernel, theme, image, workspace, data, job, pipeline, model, serve, endpoint, aws, ops)
]
# The flat names the README, older notes and muscle memory use: each is the same task as in its namespace.
FLAT_ALIASES = {
    "kernels": kernel.kernels,
    "kernel-remove": kernel.kernel_remove,
    "kernels-restore": kernel.kernels_restore,
    "lock": kernel.lock,
    "parity": kernel.parity,
    "build": image.build,
    "push": image.push,
    "app": image.app,
    "lab": workspace.lab,
    "devcontainer": workspace.devcontainer,
    "studio-image": workspace.studio_image,
    "train": job.train,
    "process": job.process,
    "deploy": job.deploy,
    "attach": job.attach,
    "notebook": job.notebook,
    "predict": serve.predict,
    "transform": serve.transform,
    "instance": aws.instance,
    "iam-policy": aws.iam_policy,
    "doctor": ops.doctor,
    "clean": ops.clean,
    "status": ops.status,
}

ns = Collection()
for namespace in NAMESPACES:
    ns.add_collection(namespace)
for alias, function in FLAT_ALIASES.items():
    ns.add_task(function, name=alias)

__all__ = ["FLAT_ALIASES", "NAMESPACES", "clear_errors", "ns"]
