"""`inv workspace.*`: the theme's image as a place to work, with the kernel's locked versions everywhere.

lab.py: JupyterLab from the workspace image here (`inv lab`); devcontainer.py: the same image for VS Code / Dev
Containers (`inv devcontainer`); studio.py: the same image as a SageMaker Studio image (`inv studio-image`).
The image itself is docker/Dockerfile's `workspace` target, built by `inv build --workspace`.
"""

from __future__ import annotations

from gs_ds_env.errors import WorkspaceError

HOME = "/home/sagemaker-user"  # Studio's user (uid 1000, gid 100) and its home: the image's user and workdir
USER = "sagemaker-user"
UID, GID = 1000, 100
VENV_PYTHON = "/opt/venv/bin/python"  # the training env, which is the kernel

__all__ = ["GID", "HOME", "UID", "USER", "VENV_PYTHON", "WorkspaceError"]
