#!/usr/bin/env bash
# Create (or safely rebuild) one theme's uv virtualenv and register it as the Jupyter kernel
# <theme>_<pyver>. Standalone: usable from a notebook lifecycle script with nothing but bash and python3.
set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: gs-env-create-kernel.sh [--force] [--register-only] <theme> <python_version> [requirements_file] [torch_backend]
       gs-env-create-kernel.sh --print-working-dir

Create themes/<theme>/kernel/.venv with uv for Python <python_version> (3.N or 3.NN), install the theme's
kernel and image requirement lists under its lock themes/<theme>/requirements.lock (so every package has the
version the theme image has), run themes/<theme>/smoke.py in the new venv, and register the Jupyter kernel
<theme>_<pyver> (e.g. tabular_312) whose env puts the venv first on PATH.

  requirements_file install this file (plus ipykernel) instead of the theme's lists, still under the lock
  torch_backend     auto (default), cpu, cu121, cu126, ..., rocm6.3, xpu, or none (passed to uv --torch-backend;
                    none takes torch from PyPI, exactly as locked). The lock fixes torch's version whatever the backend.
  --force           rebuild even when the venv matches the manifest and is healthy
  --register-only   only (re-)register the kernelspec of an existing healthy venv (what restore does)
  --print-working-dir
                    print the WORKING_DIR this script would use (see below) and exit (the Makefile asks it)
  -h, --help        this help

Environment: WORKING_DIR holds uv, caches and uv-managed Pythons (default /home/ec2-user/SageMaker/.myenv on a
SageMaker notebook, else ~/.local/share/gs-ds-env). Unset, and with the project's venv (make venv), the value
the project's settings read from .env. KERNEL_WITH_PROJECT=1|0: install this project into the kernel (default:
the theme's theme.env says; inv passes it). UV: the uv to use (default: uv on PATH, else WORKING_DIR's, else
installed there with pip; inv passes the project's, so make's bootstrapped .tools/uv is used, not a second one).
JUPYTER_DATA_DIR is respected. A rebuild is built aside and swapped in only when it installs and its smoke
test passes; otherwise the previous kernel stays as it was.
EOF
}

GS_SCRIPT=gs-env-create-kernel GS_LOG_TAG=kernel
# shellcheck source=bin/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # die, log, env_get, check, working_dir
REPO_ROOT="$GS_REPO_ROOT"

# ---- arguments, all validated before anything is created -------------------------------------------
force=0
register_only=0
positional=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --force) force=1 ;;
    --register-only) register_only=1 ;;
    --print-working-dir) working_dir; exit 0 ;;
    --) shift; positional+=("$@"); break ;;
    -?*) die "unknown option '$1' (see --help)" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
((${#positional[@]} >= 2 && ${#positional[@]} <= 4)) || { usage >&2; exit 2; }

theme="${positional[0]}"
py_version="${positional[1]}"
requirements="${positional[2]:-}"
torch_backend="${positional[3]:-auto}"

# The rules the settings apply too (gs_ds_env/rules.env; a test feeds the same values to both).
check THEME_NAME "$theme" "theme '$theme' is not a valid name: lowercase letters, digits and single '-', starting with a letter, at most 32 characters"
theme_dir="$REPO_ROOT/themes/$theme"
if [[ ! -d "$theme_dir" ]]; then
  # A theme is a folder with kernel/requirements.txt; _templates/ (inv theme.new's templates) is not one.
  available="$(find "$REPO_ROOT/themes" -mindepth 3 -maxdepth 3 -path '*/kernel/requirements.txt' -not -path "$REPO_ROOT/themes/_*" 2>/dev/null |
    awk -F/ '{print $(NF-2)}' | sort | xargs)"
  die "theme '$theme' does not exist under themes/; available: ${available:-none}"
fi
check PYTHON_VERSION "$py_version" "python version '$py_version' is not of the form 3.N or 3.NN (e.g. 3.12)"
lock="$theme_dir/requirements.lock"
[[ -f "$lock" ]] || die "theme '$theme' has no lock $lock: create it with 'inv lock --theme $theme'"
min_python="$(sed -n 's/.*Python >= \(3\.[0-9]*\).*/\1/p' "$lock" | head -n 1)"
if [[ -n "$min_python" ]] && ((${py_version#3.} < ${min_python#3.})); then
  die "python version $py_version is older than the lock supports (Python >= $min_python): use PY=$min_python or newer"
fi
if [[ -n "$requirements" ]]; then
  [[ -f "$requirements" ]] || die "requirements file '$requirements' does not exist"
  requirements="$(cd "$(dirname "$requirements")" && pwd)/$(basename "$requirements")"
  requirement_args=(-r "$requirements" ipykernel)
else
  requirement_args=(-r "$theme_dir/kernel/requirements.txt" -r "$theme_dir/docker/requirements.txt")
fi
smoke="$theme_dir/smoke.py"
[[ -z "${UV:-}" || -x "${UV:-}" ]] || die "UV '$UV' is not an executable uv: unset it, or point it at one"
# Does the kernel also hold this project (theme.env KERNEL_WITH_PROJECT=1)? inv says so in the environment;
# standalone, theme.env says, as the project's Theme reads it (first word 1: yes).
with_project="${KERNEL_WITH_PROJECT:-}"
[[ -z "$with_project" || "$with_project" =~ ^[01]$ ]] ||
  die "KERNEL_WITH_PROJECT '$with_project' is not 0 or 1 (or unset: theme.env says)"
if [[ -z "$with_project" ]]; then
  read -r theme_says _ <<<"$(env_get "$theme_dir/theme.env" KERNEL_WITH_PROJECT)" || true
  with_project=0
  if [[ "$theme_says" == 1 ]]; then with_project=1; fi
fi
check TORCH_BACKEND "$torch_backend" "torch backend '$torch_backend' is not one of auto, none, cpu, cuNNN (e.g. cu126), rocmX.Y, xpu"

kernel_name="${theme}_${py_version//./}"
kernel_dir="$theme_dir/kernel"
venv="$kernel_dir/.venv"
manifest="$kernel_dir/manifest.env"
frozen="$kernel_dir/requirements.lock.txt"

WORKING_DIR="$(working_dir)" # what goes where under it: gs_ds_env/layout.env
export UV_CACHE_DIR PIP_CACHE_DIR UV_PYTHON_INSTALL_DIR
UV_CACHE_DIR="$(working_path UV_CACHE_DIR)"
PIP_CACHE_DIR="$(working_path PIP_CACHE_DIR)"
UV_PYTHON_INSTALL_DIR="$(working_path UV_PYTHON_INSTALL_DIR)"
hf_home="$(working_path HF_HOME)"
torch_home="$(working_path TORCH_HOME)"
mkdir -p "$UV_CACHE_DIR" "$PIP_CACHE_DIR" "$UV_PYTHON_INSTALL_DIR" "$hf_home" "$torch_home"
# The venv keeps the bytecode of what its checks import (as the image keeps what its smoke test imports): the
# kernel then starts without compiling ipykernel, pandas... again, even where the environment says not to write it.
unset PYTHONDONTWRITEBYTECODE
# uv hardlinks from its cache only within one filesystem; across two it must copy (and would warn).
if [[ "$(stat -c %d "$UV_CACHE_DIR")" != "$(stat -c %d "$kernel_dir")" ]]; then
  log "note: the uv cache ($UV_CACHE_DIR) and $kernel_dir are on different filesystems; packages are copied, not linked"
  export UV_LINK_MODE=copy
fi

# ---- uv: the one inv passes ($UV), else the one on PATH, else the one in WORKING_DIR, else bootstrap it there ----
find_uv() {
  if [[ -n "${UV:-}" ]]; then echo "$UV"; return; fi
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  local tool pinned
  tool="$(working_path UV_TOOL_DIR)"
  if [[ -x "$tool/bin/uv" ]]; then echo "$tool/bin/uv"; return; fi
  log "uv not found: installing it into $tool (pip --target, nothing touches the base env)"
  pinned="$(env_get "$REPO_ROOT/docker/pins.env" UV_VERSION)"
  python3 -m pip install --quiet --disable-pip-version-check --target "$tool" "uv${pinned:+==$pinned}" >&2
  echo "$tool/bin/uv"
}
UV="$(find_uv)"

kernelspec_root() { # where `jupyter kernelspec` looks for user kernels; honours JUPYTER_DATA_DIR
  "$1" -c 'from jupyter_core.paths import jupyter_data_dir; print(jupyter_data_dir())'
}

manifest_value() { env_get "${2:-$manifest}" "$1"; } # KEY [FILE] -> its value in manifest.env, "" when none

venv_healthy() { # DIR -> 0 when its python starts and imports ipykernel
  [[ -x "$1/bin/python" ]] && "$1/bin/python" -c 'import ipykernel' >/dev/null 2>&1
}

spec_healthy() { # VENV -> 0 when the kernelspec <kernel_name> parses and starts this venv's python
  local spec
  spec="$(kernelspec_root "$1/bin/python")/kernels/$kernel_name/kernel.json"
  [[ -f "$spec" ]] && "$1/bin/python" - "$spec" "$1" >/dev/null 2>&1 <<'PY'
import json, os, sys
spec, venv = json.load(open(sys.argv[1])), os.path.abspath(sys.argv[2])
sys.exit(0 if os.path.abspath(spec["argv"][0]).startswith(venv + os.sep) else 1)
PY
}

register_kernel() { # VENV -> writes the kernelspec <kernel_name> with ipykernel from the venv's own python
  local python="$1/bin/python" full_version scratch
  full_version="$("$python" -c 'import platform; print(platform.python_version())')"
  # ipykernel writes the spec into a mkdtemp *_kernels folder it never removes: give it one we remove.
  scratch="$(mktemp -d)"
  TMPDIR="$scratch" "$python" -m ipykernel install --user --name "$kernel_name" \
    --display-name "Python $full_version ($theme)" \
    --env VIRTUAL_ENV "$1" \
    --env PATH "$1/bin:\${PATH}" \
    --env HF_HOME "$hf_home" \
    --env TORCH_HOME "$torch_home" \
    --env PIP_CACHE_DIR "$PIP_CACHE_DIR" \
    --env UV_CACHE_DIR "$UV_CACHE_DIR" >/dev/null
  rm -rf "$scratch"
  log "registered kernel $kernel_name -> $(kernelspec_root "$python")/kernels/$kernel_name"
}

staging="$kernel_dir/.venv.new"
previous="$kernel_dir/.venv.previous"
discarded="$kernel_dir/.venv.discarded" # a venv renamed aside before it is deleted: the swap back is instant
frozen_tmp="$kernel_dir/.requirements.lock.txt.new"
smoke_log="$kernel_dir/.smoke.log.new"
smoke_pid=""
spec_backup="$kernel_dir/.kernelspec.previous"

# ---- one build per theme at a time: a second run waits (flock dies with its holder, never goes stale) -------
lock_file="$kernel_dir/.build.lock"
exec 9>>"$lock_file"
if ! flock -n 9; then
  log "another build of $theme is running (pid $(head -n 1 "$lock_file" 2>/dev/null || echo '?')); waiting for it"
  flock 9
fi
: >"$lock_file"
echo "$$" >&9

# ---- finish what an interrupted run (even a SIGKILL) left: the old or the new venv always survives ---------
if [[ -d "$previous" ]]; then
  if [[ ! -d "$venv" ]] || ! venv_healthy "$venv"; then
    log "an interrupted run left the previous venv aside: putting it back"
    [[ -e "$venv" ]] && mv "$venv" "$discarded.$$"
    mv "$previous" "$venv"
    if [[ -d "$spec_backup" ]]; then
      spec_target="$(kernelspec_root "$venv/bin/python")/kernels/$(manifest_value KERNEL_NAME)"
      rm -rf "$spec_target"
      mkdir -p "$(dirname "$spec_target")"
      mv "$spec_backup" "$spec_target"
    fi
  else
    log "an interrupted run finished its swap: removing the previous venv"
    rm -rf "$previous"
  fi
fi
if compgen -G "$discarded*" >/dev/null || [[ -e "$staging" || -e "$frozen_tmp" || -e "$manifest.new" || -e "$spec_backup" || -e "$smoke_log" ]]; then
  log "removing what an interrupted run left half-done (.venv.new and temporary files)"
  rm -rf "$staging" "$frozen_tmp" "$manifest.new" "$spec_backup" "$smoke_log" "$discarded"*
fi

# A test can stop the build at a named step (fault injection); unset, this does nothing.
checkpoint() {
  if [[ "${GS_KERNEL_PAUSE_AT:-}" == "$1" ]]; then
    log "paused at $1 (GS_KERNEL_PAUSE_AT)"
    # Short `wait`s, not one foreground sleep: bash runs a trap only once its foreground command ends, and a signal
    # that lands as the sleep is being started can be left pending until `wait` returns (it waited out the whole
    # pause, now at most 0.1 s).
    local tenths
    for ((tenths = 0; tenths < ${GS_KERNEL_PAUSE_SECONDS:-60} * 10; tenths++)); do
      sleep 0.1 >/dev/null 2>&1 &
      wait "$!"
    done
  fi
}

if ((register_only)); then
  venv_healthy "$venv" || die "$venv is missing or broken; rebuild it with: $0 $theme $py_version"
  register_kernel "$venv"
  exit 0
fi

# Everything the venv is made from: a change to any of these rebuilds it.
inputs_sha="$(cat "$lock" "$theme_dir/kernel/requirements.txt" "$theme_dir/docker/requirements.txt" \
  "$([[ -f "$theme_dir/theme.env" ]] && echo "$theme_dir/theme.env" || echo /dev/null)" ${requirements:+"$requirements"} "$([[ -f "$smoke" ]] && echo "$smoke" || echo /dev/null)" | sha256sum | cut -d' ' -f1)"
lock_sha="$(sha256sum "$lock" | cut -d' ' -f1)"

# ---- idempotence: same inputs and a healthy venv -> nothing to do ---------------------------------
if ((!force)) && [[ -f "$manifest" ]] && venv_healthy "$venv" &&
  [[ "$(manifest_value KERNEL_NAME)" == "$kernel_name" &&
    "$(manifest_value INPUTS_SHA256)" == "$inputs_sha" &&
    "$(manifest_value TORCH_BACKEND)" == "$torch_backend" ]]; then
  if spec_healthy "$venv"; then
    log "kernel $kernel_name is up to date and healthy ($venv); nothing to do (--force rebuilds)"
  else
    log "venv is up to date; kernelspec $kernel_name was missing or broken (it must parse and start $venv/bin/python): registering it again"
    register_kernel "$venv"
  fi
  exit 0
fi

# ---- build aside, swap in only when everything worked ---------------------------------------------
swapped=0
spec_target=""

rollback() {
  local rc=$?
  trap '' INT TERM HUP # finish putting things back even if the user presses Ctrl-C again
  if [[ -n "$smoke_pid" ]]; then # a smoke test still running in the venv about to be removed
    kill "$smoke_pid" 2>/dev/null || true
    wait "$smoke_pid" 2>/dev/null || true
  fi
  if ((swapped)) && [[ -d "$previous" ]]; then
    log "stopped after the swap: restoring the previous venv and kernelspec"
    # Rename aside first, put the previous venv back, delete last: the kernel works again at once, not after an
    # rm -rf of hundreds of MB (a kernel started right after the command returns must find its venv).
    mv "$venv" "$discarded.$$"
  fi
  # Between the two renames of the swap the old venv exists only as .venv.previous: it always goes back.
  if [[ ! -d "$venv" && -d "$previous" ]]; then
    mv "$previous" "$venv"
    if [[ -d "$spec_backup" && -n "$spec_target" ]]; then
      rm -rf "$spec_target"
      mv "$spec_backup" "$spec_target"
    fi
  fi
  rm -rf "$staging" "$frozen_tmp" "$manifest.new" "$spec_backup" "$smoke_log" "$discarded.$$"
  [[ -d "$venv" ]] && rm -rf "$previous"
  if ((rc != 0)); then
    log "kernel $kernel_name was NOT changed; the previous kernel (if any) still works"
  fi
  exit "$rc"
}
trap rollback EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

rm -rf "$staging" "$previous"
log "creating venv for Python $py_version in $staging (uv $("$UV" --version | cut -d' ' -f2), cache $UV_CACHE_DIR)"
# --relocatable: the venv is built beside its final place and renamed into it.
"$UV" venv --quiet --seed --relocatable --python "$py_version" "$staging" ||
  { log "no Python $py_version: uv could neither find nor download it (UV_PYTHON_DOWNLOADS=${UV_PYTHON_DOWNLOADS:-automatic})"; exit 3; }

install_cmd=("$UV" pip install --python "$staging/bin/python" "${requirement_args[@]}" -c "$lock")
[[ "$torch_backend" != none ]] && install_cmd+=(--torch-backend "$torch_backend")
log "+ ${install_cmd[*]}"
# Every version is pinned by the lock, so uv's cache answers alone when it holds them (a rebuild, a second theme):
# offline first saves the index round trips (~2 s); anything missing, and it goes online.
if ! "${install_cmd[@]}" --offline --quiet 2>/dev/null; then
  "${install_cmd[@]}" || { log "installing under $lock failed"; exit 4; }
fi
smoke_result="none (no themes/$theme/smoke.py)"
smoke_at=""
full_version="$("$staging/bin/python" -c 'import platform; print(platform.python_version())')"
# The smoke test runs once per set of inputs (lock, lists, theme.env, smoke.py), Python and torch backend: a
# rebuild of the same (--force) installs the same files from the same cache, so the result the manifest
# recorded for the venv being replaced holds; it is carried over with the time it ran.
if [[ -f "$smoke" && -f "$manifest" && "$(manifest_value SMOKE)" == smoke* && -n "$(manifest_value SMOKE_AT)" &&
  "$(manifest_value KERNEL_NAME)" == "$kernel_name" && "$(manifest_value INPUTS_SHA256)" == "$inputs_sha" &&
  "$(manifest_value TORCH_BACKEND)" == "$torch_backend" && "$(manifest_value PYTHON_VERSION)" == "$full_version" ]]; then
  smoke_result="$(manifest_value SMOKE)"
  smoke_at="$(manifest_value SMOKE_AT)"
  log "smoke test: passed for these inputs on Python $full_version at $smoke_at (recorded in $manifest): not run again"
elif [[ -f "$smoke" ]]; then
  log "smoke test: $staging/bin/python $smoke"
  # Run from the theme folder with the kernel's environment, as a notebook would, in the background while the
  # venv is finished (this project, the import check); waited for before the swap: a failure keeps the old kernel.
  (cd "$theme_dir" && HF_HOME="$hf_home" TORCH_HOME="$torch_home" MPLCONFIGDIR="$(working_path MPLCONFIGDIR)" \
    exec "$staging/bin/python" "$smoke") >"$smoke_log" 2>&1 &
  smoke_pid=$!
fi
venv_healthy "$staging" || { log "the new venv cannot import ipykernel"; exit 4; }
# A theme whose notebooks drive training jobs (theme.env KERNEL_WITH_PROJECT=1, e.g. tabular) gets this
# project's package, editable and without dependencies: kernel/requirements.txt lists them, so the lock pins them.
# (Not with a requirements file of your own: that kernel holds what the file says.)
if [[ -z "$requirements" && "$with_project" == 1 ]]; then
  [[ -f "$REPO_ROOT/pyproject.toml" ]] ||
    { log "theme $theme installs this project into its kernel, but $REPO_ROOT has no pyproject.toml"; exit 4; }
  log "+ $UV pip install --python $staging/bin/python --no-deps --editable $REPO_ROOT"
  "$UV" pip install --quiet --python "$staging/bin/python" --no-deps --editable "$REPO_ROOT" ||
    { log "installing this project (editable) into the new venv failed"; exit 4; }
  # Every package the project's modules import when they load is installed (looked up, not imported).
  "$staging/bin/python" -m gs_ds_env.kernel.import_check "$REPO_ROOT" ||
    { log "gs_ds_env cannot be imported in the new venv: add what is not installed to themes/$theme/kernel/requirements.txt and run inv lock"; exit 4; }
fi
checkpoint installed

if [[ -n "$smoke_pid" ]]; then
  if ! wait "$smoke_pid"; then
    smoke_pid=""
    tail -n 15 "$smoke_log" >&2
    log "the smoke test themes/$theme/smoke.py failed in the new venv"
    exit 5
  fi
  smoke_pid=""
  smoke_result="$(tail -n 1 "$smoke_log")"
  smoke_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  rm -f "$smoke_log"
  log "$smoke_result"
fi
"$UV" pip freeze --python "$staging/bin/python" >"$frozen_tmp"

old_kernel_name="$(manifest_value KERNEL_NAME)"
spec_target="$(kernelspec_root "$staging/bin/python")/kernels/$kernel_name"
if [[ -d "$spec_target" ]]; then
  cp -a "$spec_target" "$spec_backup"
fi

if [[ -d "$venv" ]]; then
  mv "$venv" "$previous"
  checkpoint moved-aside
fi
mv "$staging" "$venv"
swapped=1
checkpoint swapped
register_kernel "$venv"

{
  echo "# written by bin/gs-env-create-kernel.sh; read by the restore script, 'inv kernels' and 'inv doctor'"
  echo "# (REQUIREMENTS_FILE, LOCK_SHA256, UV_VERSION, CREATED_AT: what it was made from and when, for people)"
  printf 'KERNEL_NAME="%s"\n' "$kernel_name"
  printf 'THEME="%s"\n' "$theme"
  printf 'PYTHON_VERSION="%s"\n' "$full_version"
  printf 'REQUIREMENTS_FILE="%s"\n' "${requirements:-themes/$theme/kernel/requirements.txt themes/$theme/docker/requirements.txt}"
  printf 'LOCK_SHA256="%s"\n' "$lock_sha"
  printf 'INPUTS_SHA256="%s"\n' "$inputs_sha"
  printf 'SMOKE="%s"\n' "${smoke_result//\"/\'}"
  printf 'SMOKE_AT="%s"\n' "$smoke_at"
  printf 'TORCH_BACKEND="%s"\n' "$torch_backend"
  printf 'UV_VERSION="%s"\n' "$("$UV" --version | cut -d' ' -f2)"
  printf 'CREATED_AT="%s"\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$manifest.new"
mv "$manifest.new" "$manifest"
mv "$frozen_tmp" "$frozen"
swapped=0
checkpoint committed

if [[ -n "$old_kernel_name" && "$old_kernel_name" != "$kernel_name" ]]; then
  old_spec="$(kernelspec_root "$venv/bin/python")/kernels/$old_kernel_name"
  if [[ -d "$old_spec" ]]; then
    log "removing kernelspec $old_kernel_name: its venv was replaced by $kernel_name"
    rm -rf "$old_spec"
  fi
fi
log "kernel $kernel_name ready: Python $full_version, venv $venv ($(du -sh "$venv" | cut -f1))"
