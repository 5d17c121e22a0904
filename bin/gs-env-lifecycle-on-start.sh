#!/usr/bin/env bash
# SageMaker notebook instance lifecycle configuration, "Start notebook" script (runs as root on every start).
# Only /home/ec2-user/SageMaker survives a stop/start: the venvs do, the kernelspecs do not. This re-registers
# them in the background (a lifecycle script must finish within 5 minutes) and then restarts Jupyter.
set -Eeuo pipefail

usage() {
  cat <<'EOF_USAGE'
Usage: gs-env-lifecycle-on-start.sh [-h|--help]

Paste into a notebook lifecycle configuration (Start notebook). Environment:
  GS_DS_ENV_DIR   the clone of this repository (default /home/ec2-user/SageMaker/gs-ds-env)
  NOTEBOOK_USER   the Jupyter user (default ec2-user)
Logs to $GS_DS_ENV_DIR/../.myenv/restore-kernels.log.
EOF_USAGE
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) printf 'gs-env-lifecycle-on-start: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
esac

repo_dir="${GS_DS_ENV_DIR:-/home/ec2-user/SageMaker/gs-ds-env}"
notebook_user="${NOTEBOOK_USER:-ec2-user}"
[[ -x "$repo_dir/bin/gs-env-restore-kernels.sh" ]] ||
  { printf 'gs-env-lifecycle-on-start: %s is not a gs-ds-env clone (set GS_DS_ENV_DIR)\n' "$repo_dir" >&2; exit 2; }
log_dir="$(dirname "$repo_dir")/.myenv"
mkdir -p "$log_dir"
chown "$notebook_user" "$log_dir"

nohup bash -c "
  sudo -u '$notebook_user' -i '$repo_dir/bin/gs-env-restore-kernels.sh'
  systemctl restart jupyter-server
" >>"$log_dir/restore-kernels.log" 2>&1 &
echo "kernel restore started in the background; log: $log_dir/restore-kernels.log"
