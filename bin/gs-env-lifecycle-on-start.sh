#!/usr/bin/env bash
# SageMaker notebook instance lifecycle configuration, "Start notebook" script (runs as root on every start).
# Only /home/ec2-user/SageMaker survives a stop/start: the venvs do, the kernelspecs do not. This moves Docker's
# data root off the small root volume (once), re-registers the kernels in the background (a lifecycle script
# must finish within 5 minutes) and then restarts Jupyter.
set -Eeuo pipefail

usage() {
  cat <<'EOF_USAGE'
Usage: gs-env-lifecycle-on-start.sh [-h|--help]

Paste into a notebook lifecycle configuration (Start notebook). It
  1. points Docker's data root at $NOTEBOOK_ROOT/.docker (daemon.json "data-root", then restarts docker) when
     it is elsewhere: image builds then fill the persistent volume, not the small root volume. Images under the
     old root are not copied (rebuilding is faster than copying inside the 5-minute limit) nor deleted;
  2. re-registers every theme kernel in the background, then restarts Jupyter;
  3. with IDLE_STOP_MINUTES set, installs the idle watcher (bin/gs-env-idle-stop.py, a systemd timer every 5
     minutes): the instance stops itself once idle that long; unset, it removes it (off by default).
Idempotent: a second run changes nothing in daemon.json and restarts nothing.
Environment:
  GS_DS_ENV_DIR       the clone of this repository (default $NOTEBOOK_ROOT/gs-ds-env)
  NOTEBOOK_USER       the Jupyter user (default ec2-user)
  NOTEBOOK_ROOT       the persistent volume (default /home/ec2-user/SageMaker)
  DOCKER_DAEMON_JSON  Docker's daemon config (default /etc/docker/daemon.json)
  IDLE_STOP_MINUTES   stop the instance after this many idle minutes (default: unset, no auto-stop)
  IDLE_STOP_DRY_RUN   1: the watcher only logs what it would stop
  SYSTEMD_DIR         where the watcher's units go (default /etc/systemd/system)
Logs to $NOTEBOOK_ROOT/.myenv/restore-kernels.log (the watcher: idle-stop.log).
EOF_USAGE
}
case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) printf 'gs-env-lifecycle-on-start: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
esac

notebook_root="${NOTEBOOK_ROOT:-/home/ec2-user/SageMaker}"
repo_dir="${GS_DS_ENV_DIR:-$notebook_root/gs-ds-env}"
notebook_user="${NOTEBOOK_USER:-ec2-user}"
daemon_json="${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}"
die() { printf 'gs-env-lifecycle-on-start: %s\n' "$*" >&2; exit 2; }
[[ -d "$notebook_root" ]] || die "$notebook_root does not exist: set NOTEBOOK_ROOT to the persistent volume"
[[ -x "$repo_dir/bin/gs-env-restore-kernels.sh" ]] || die "$repo_dir is not a gs-ds-env clone (set GS_DS_ENV_DIR)"
id "$notebook_user" >/dev/null 2>&1 || die "user $notebook_user does not exist (set NOTEBOOK_USER)"
log_dir="$notebook_root/.myenv"
mkdir -p "$log_dir"
chown "$notebook_user" "$log_dir"

# ---- Docker's data root on the persistent volume --------------------------------------------------------
data_root="$notebook_root/.docker"
if command -v python3 >/dev/null 2>&1; then
  mkdir -p "$(dirname "$daemon_json")" "$data_root"
  # Merge, never overwrite: other daemon.json settings (runtimes, log drivers) stay as they are. A data-root set
  # on purpose elsewhere is kept. A file this cannot read is left untouched with a warning: a failing start
  # script would stop the notebook instance from starting, and the kernels would not be restored.
  changed="$(python3 - "$daemon_json" "$data_root" <<'EOF_PY' || echo "skipped: could not edit $daemon_json"
import json, os, sys
path, root = sys.argv[1], sys.argv[2]
config = {}
try:
    if os.path.exists(path) and os.path.getsize(path):
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
except (OSError, ValueError) as error:
    print(f"skipped: {path} is not valid JSON ({type(error).__name__}: {str(error)[:80]}); left as it is")
    sys.exit(0)
if not isinstance(config, dict):
    print(f"skipped: {path} holds a {type(config).__name__}, not a JSON object; left as it is")
elif config.get("data-root") == root:
    print("unchanged")
elif config.get("data-root"):
    print(f"kept: data-root is set to {config['data-root']} on purpose; not moving it")
else:
    print("moved from /var/lib/docker")
    config["data-root"] = root
    with open(path + ".new", "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2)
    os.replace(path + ".new", path)
EOF_PY
)"
  if [[ "$changed" == moved* ]]; then
    echo "docker data root -> $data_root ($changed; old images are not copied); restarting docker"
    systemctl restart docker || echo "warning: could not restart docker; it uses $data_root from its next start"
  elif [[ "$changed" == unchanged ]]; then
    echo "docker data root already $data_root"
  else
    echo "warning: docker data root not changed: ${changed#*: }"
  fi
else
  echo "warning: no python3 to edit $daemon_json; docker's data root stays where it is"
fi

# ---- kernels: restore in the background, then restart Jupyter ----------------------------------------------
if [[ "$(id -un)" == "$notebook_user" ]]; then
  as_user=()
else
  as_user=(sudo -u "$notebook_user" -i)
fi
nohup bash -c '"$@"; systemctl restart jupyter-server' _ "${as_user[@]}" "$repo_dir/bin/gs-env-restore-kernels.sh" \
  >>"$log_dir/restore-kernels.log" 2>&1 &
echo "kernel restore started in the background; log: $log_dir/restore-kernels.log"

# ---- idle auto-stop: on when IDLE_STOP_MINUTES is set, off (and removed) otherwise -----------------------------------
# A bad value warns and leaves it off: a failing start script would stop the notebook instance from starting.
systemd_dir="${SYSTEMD_DIR:-/etc/systemd/system}"
idle_unit="gs-ds-env-idle-stop"
idle_minutes="${IDLE_STOP_MINUTES:-}"
if [[ -n "$idle_minutes" && ! "$idle_minutes" =~ ^[1-9][0-9]*$ ]]; then
  echo "warning: IDLE_STOP_MINUTES=$idle_minutes is not a whole number of minutes: idle auto-stop is off"
  idle_minutes=""
fi
if [[ -n "$idle_minutes" ]]; then
  mkdir -p "$systemd_dir"
  cat >"$systemd_dir/$idle_unit.service" <<EOF_UNIT
[Unit]
Description=gs-ds-env: stop this notebook instance after ${idle_minutes} idle minutes

[Service]
Type=oneshot
Environment=IDLE_STOP_MINUTES=${idle_minutes}
Environment=IDLE_STOP_DRY_RUN=${IDLE_STOP_DRY_RUN:-0}
ExecStart=/usr/bin/env python3 ${repo_dir}/bin/gs-env-idle-stop.py
StandardOutput=append:${log_dir}/idle-stop.log
StandardError=append:${log_dir}/idle-stop.log
EOF_UNIT
  cat >"$systemd_dir/$idle_unit.timer" <<EOF_UNIT
[Unit]
Description=gs-ds-env: look for idleness every 5 minutes

[Timer]
OnBootSec=5min
OnUnitActiveSec=5min

[Install]
WantedBy=timers.target
EOF_UNIT
  systemctl daemon-reload || echo "warning: systemctl daemon-reload failed"
  systemctl enable --now "$idle_unit.timer" || echo "warning: could not start $idle_unit.timer"
  echo "idle auto-stop: on, after $idle_minutes idle minutes (log: $log_dir/idle-stop.log)"
elif [[ -f "$systemd_dir/$idle_unit.timer" ]]; then
  systemctl disable --now "$idle_unit.timer" || true
  rm -f "$systemd_dir/$idle_unit.timer" "$systemd_dir/$idle_unit.service"
  systemctl daemon-reload || true
  echo "idle auto-stop: off (no IDLE_STOP_MINUTES): its timer removed"
fi
