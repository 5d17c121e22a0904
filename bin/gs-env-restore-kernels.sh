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

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) printf 'gs-env-restore-kernels: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
esac

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
restored=0
failed=0
shopt -s nullglob
for manifest in "$REPO_ROOT"/themes/*/kernel/manifest.env; do
  theme="$(sed -n 's/^THEME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$manifest")"
  full_version="$(sed -n 's/^PYTHON_VERSION="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' "$manifest")"
  py_version="$(cut -d. -f1,2 <<<"$full_version")"
  if "$REPO_ROOT/bin/gs-env-create-kernel.sh" --register-only "$theme" "$py_version"; then
    restored=$((restored + 1))
  else
    failed=$((failed + 1))
  fi
done
printf '[restore] %d kernel(s) restored, %d failed\n' "$restored" "$failed" >&2
((failed == 0))
