#!/usr/bin/env bash
# What every bin/ script shares, sourced (`source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`), and what the Makefile asks
# it, run (`bash bin/lib.sh --help`): one reader of the project's KEY=value files (theme.env, docker/pins.env,
# manifest.env, gs_ds_env/rules.env, gs_ds_env/layout.env) by python-dotenv's rules, the validation rules both
# languages share, the standalone WORKING_DIR and what goes where under it, one way to fail (die) and to say what
# happens (log).
# Under inv the scripts get every value resolved and validated already; standalone they read and check it here.

GS_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GS_SCRIPT="${GS_SCRIPT:-$(basename "$0" .sh)}" # who speaks in die's line
GS_LOG_TAG="${GS_LOG_TAG:-gs}"                 # the [tag] of log's lines

die() { printf '%s: %s\n' "$GS_SCRIPT" "$*" >&2; exit 2; }
log() { printf '[%s] %s\n' "$GS_LOG_TAG" "$*" >&2; }

# FILE KEY -> the value python-dotenv reads for KEY (the last assignment; optional `export`, spaces around the key):
# a quoted value as it is between its quotes; an unquoted one up to a `#` (as the project's Theme reads theme.env),
# trimmed. Prints nothing when the file or the key is not there.
env_get() {
  local file="$1" wanted="$2" key value found=""
  [[ -f "$file" ]] || return 0
  while IFS='=' read -r key value || [[ -n "$key" ]]; do
    [[ "$key" =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*$ ]] || continue
    [[ "${BASH_REMATCH[2]}" == "$wanted" ]] || continue
    value="${value#"${value%%[![:space:]]*}"}"
    if [[ "$value" == \"* ]]; then
      value="${value#\"}" found="${value%%\"*}"
    elif [[ "$value" == \'* ]]; then
      value="${value#\'}" found="${value%%\'*}"
    else
      value="${value%%#*}"
      found="${value%"${value##*[![:space:]]}"}"
    fi
  done <"$file"
  printf '%s' "$found"
}

# NAME -> WORKING_DIR/<where gs_ds_env/layout.env puts NAME> (WORKING_DIR resolved by the caller).
working_path() {
  local relative
  relative="$(env_get "$GS_REPO_ROOT/gs_ds_env/layout.env" "$1")"
  [[ -n "$relative" ]] || die "no $1 in gs_ds_env/layout.env"
  printf '%s/%s\n' "${WORKING_DIR:?working_path needs WORKING_DIR}" "$relative"
}

# NAME -> the rule (a whole-value ERE) gs_ds_env/rules.env gives it.
rule() { env_get "$GS_REPO_ROOT/gs_ds_env/rules.env" "$1"; }

# NAME VALUE WHAT -> nothing when VALUE follows rule NAME, else die with WHAT.
check() {
  local pattern
  pattern="$(rule "$1")"
  [[ -n "$pattern" ]] || die "no rule $1 in gs_ds_env/rules.env"
  [[ "$2" =~ ^($pattern)$ ]] || die "$3"
}

# -> WORKING_DIR for a script run standalone: the environment's; else, once the project's venv exists (make venv),
# what the project's settings read from .env (python-dotenv, validated: their one line when it is wrong); else the
# default the settings have. Dies when it is not an absolute path.
working_dir() {
  local dir="${WORKING_DIR:-}"
  if [[ -z "$dir" && -f "$GS_REPO_ROOT/.env" && -x "$GS_REPO_ROOT/.venv/bin/python" ]]; then
    local settings=(env PYTHONPATH="$GS_REPO_ROOT" "$GS_REPO_ROOT/.venv/bin/python" -m gs_ds_env.settings
      --repo-root "$GS_REPO_ROOT" --get WORKING_DIR)
    dir="$("${settings[@]}" 2>/dev/null)" || die "$GS_REPO_ROOT/.env: $("${settings[@]}" 2>&1 >/dev/null)"
  fi
  if [[ -z "$dir" ]]; then
    if [[ -d /home/ec2-user/SageMaker ]]; then
      dir=/home/ec2-user/SageMaker/.myenv
    else
      dir="${XDG_DATA_HOME:-$HOME/.local/share}/gs-ds-env"
    fi
  fi
  dir="${dir/#\~/$HOME}"
  [[ "$dir" == /* && "$dir" != *'$'* ]] ||
    die "WORKING_DIR '$dir' is not an absolute path: set it to e.g. /home/ec2-user/SageMaker/.myenv, or leave it empty"
  printf '%s\n' "$dir"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then # run, not sourced: what the Makefile asks
  set -Eeuo pipefail
  GS_SCRIPT=gs-env-lib
  case "${1:-}" in
    get)
      (($# == 3)) || die "usage: bin/lib.sh get FILE KEY"
      env_get "$2" "$3"
      printf '\n'
      ;;
    working-dir) working_dir ;;
    working-path)
      (($# == 2)) || die "usage: bin/lib.sh working-path NAME"
      WORKING_DIR="$(working_dir)"
      working_path "$2"
      ;;
    -h | --help | "")
      printf '%s\n' "Usage: bin/lib.sh get FILE KEY | working-dir | working-path NAME" \
        "  get FILE KEY        the value of KEY in a KEY=value file, read as python-dotenv reads it" \
        "  working-dir         WORKING_DIR as a standalone script resolves it (environment, .env via the settings, default)" \
        "  working-path NAME   the folder gs_ds_env/layout.env gives NAME under that WORKING_DIR (e.g. UV_CACHE_DIR)" \
        "Sourced by the bin/ scripts: die, log, env_get, rule, check, working_dir, working_path."
      ;;
    *) die "unknown command '$1' (see --help)" ;;
  esac
fi
