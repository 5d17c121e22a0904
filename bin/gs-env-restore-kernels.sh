#!/usr/bin/env bash
# Re-register every theme kernel found from its manifest. A SageMaker notebook instance wipes the
# kernelspec directory on each stop/start (only /home/ec2-user/SageMaker persists); the venvs survive.
set -Eeuo pipefail

usage() {
  cat <<'EOF_USAGE'
Usage: gs-env-restore-kernels.sh [-h|--help]

For every themes/*/kernel/manifest.env whose venv is healthy, register its kernelspec again
(gs-env-create-kernel.sh --register-only). Venvs that are missing or broken are reported, not rebuilt.
Exit status: 0 when every manifest was restored, 1 when at least one could not be.
EOF_USAGE
}

GS_SCRIPT=gs-env-restore-kernels GS_LOG_TAG=restore
# shellcheck source=bin/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # die, log, env_get
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) die "unknown argument $1 (see --help)" ;;
esac

REPO_ROOT="$GS_REPO_ROOT"
restored=0
failed=0
shopt -s nullglob
for manifest in "$REPO_ROOT"/themes/*/kernel/manifest.env; do
  theme="$(env_get "$manifest" THEME)"
  full_version="$(env_get "$manifest" PYTHON_VERSION)"
  py_version="$(cut -d. -f1,2 <<<"$full_version")"
  if "$REPO_ROOT/bin/gs-env-create-kernel.sh" --register-only "$theme" "$py_version"; then
    restored=$((restored + 1))
  else
    failed=$((failed + 1))
  fi
done
log "$(printf '%d kernel(s) restored, %d failed' "$restored" "$failed")"
((failed == 0))
