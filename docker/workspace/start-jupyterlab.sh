#!/bin/sh
# The workspace image's command: JupyterLab on port 8888 as SageMaker Studio starts it (its proxy serves it under
# /jupyterlab/default and authenticates; JUPYTER_BASE_URL and JUPYTER_TOKEN change both for `inv lab` or a dev
# container). The kernel is the theme's; the server comes from /opt/jupyter.
set -eu
exec /opt/jupyter/bin/jupyter-lab --no-browser \
  --ServerApp.ip=0.0.0.0 --ServerApp.port=8888 \
  --ServerApp.base_url="${JUPYTER_BASE_URL:-/jupyterlab/default}" \
  --IdentityProvider.token="${JUPYTER_TOKEN:-}" \
  --ServerApp.allow_origin='*' \
  --ServerApp.root_dir="${HOME:-/home/sagemaker-user}" \
  --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate
