"""`inv doctor`: is this machine (a SageMaker notebook instance or a laptop) healthy? One line per check.

Each check is ok / warn / fail with the fix in one line; any fail makes the exit status 1, so it can run from
cron as a disk alert. Nothing here writes or deletes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

from gs_ds_env.kernel import kernels, locks
from gs_ds_env.ops.checks import FAIL, OK, WARN, Check
from gs_ds_env.paths import dir_bytes
from gs_ds_env.settings import Settings

NOTEBOOK_ROOT = Path("/home/ec2-user/SageMaker")  # the persistent volume of a notebook instance
MIN_GLIBC_WHEELS = (2, 28)  # manylinux_2_28 wheels (xgboost-cpu, recent torch) need it


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_checks(settings: Settings, threshold: float, notebook_root: Path) -> list[Check]:
    places = [("/", Path("/"))]
    if notebook_root.is_dir():
        places.append(("persistent volume", notebook_root))
    places.append(("WORKING_DIR", settings.working_dir))
    checks = []
    for label, path in places:
        usage = shutil.disk_usage(_existing(path))
        percent = 100 * usage.used / usage.total
        detail = f"{path}: {percent:.0f}% used ({_gb(usage.used)} of {_gb(usage.total)}, {_gb(usage.free)} free)"
        if percent > threshold:
            checks.append(
                Check(
                    "disk",
                    label,
                    FAIL,
                    f"{detail}, over the {threshold:g}% threshold",
                    "free space: `inv clean --all --dry-run`, then without --dry-run",
                )
            )
        else:
            checks.append(Check("disk", label, OK, detail))
    return checks


def usage_breakdown(settings: Settings) -> list[Check]:
    """What takes the space, hardlink-aware (a venv linked from uv's cache counts only what it adds)."""
    parts = [
        ("uv cache", settings.paths.uv_cache),
        ("pip cache", settings.paths.pip_cache),
        ("uv-managed Pythons", settings.paths.pythons),
        ("runs/", settings.paths.runs),
    ]
    parts += [(f"venv {files.theme}", files.venv) for files in settings.paths.theme_folders()]
    return [Check("disk", name, OK, f"{_gb(dir_bytes(path))} in {path}") for name, path in parts if path.exists()]


def docker_checks(notebook_root: Path) -> list[Check]:
    from docker.errors import DockerException

    import docker

    try:
        client = docker.from_env()
        info = client.info()
        version = client.version().get("Version", "?")
    except DockerException as error:
        return [
            Check(
                "tools",
                "docker",
                FAIL,
                f"no Docker engine answers ({str(error)[:120]})",
                "start it: `sudo systemctl start docker` (or dockerd); local mode and image builds need it",
            )
        ]
    checks = [Check("tools", "docker", OK, f"Docker {version}")]
    root = Path(info.get("DockerRootDir", "/var/lib/docker"))
    layers = client.df().get("LayersSize", 0) or 0
    on_root = _existing(root).stat().st_dev == Path("/").stat().st_dev
    if notebook_root.is_dir() and on_root:
        checks.append(
            Check(
                "disk",
                "docker data root",
                WARN,
                f"{root} ({_gb(layers)} of layers) is on the root volume, which image builds fill",
                f"the lifecycle script moves it to "
                f"{notebook_root}/.docker (bin/gs-env-lifecycle-on-start.sh), or set data-root in "
                "/etc/docker/daemon.json",
            )
        )
    else:
        where = "on /" if on_root else "off the root volume"
        checks.append(Check("disk", "docker data root", OK, f"{root} ({_gb(layers)} of layers), {where}"))
    compose = _version(["docker", "compose", "version", "--short"]) or _version(
        ["docker-compose", "version", "--short"]
    )
    if compose:
        checks.append(Check("tools", "docker compose", OK, compose))
    else:
        checks.append(
            Check(
                "tools",
                "docker compose",
                FAIL,
                "neither `docker compose` nor `docker-compose` found",
                "SageMaker local mode needs it: install the compose plugin or docker-compose",
            )
        )
    return checks


def _version(cmd: list[str]) -> str:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else ""


def tool_checks(settings: Settings) -> list[Check]:
    checks = []
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or "unknown"
    found = re.search(r"(\d+)\.(\d+)", glibc)
    if found and tuple(map(int, found.groups())) < MIN_GLIBC_WHEELS:
        checks.append(
            Check(
                "tools",
                "glibc",
                WARN,
                f"{glibc}: manylinux_2_28 wheels (xgboost-cpu, torch) do not install here",
                "use an Amazon Linux 2023 notebook (glibc 2.34)",
            )
        )
    else:
        checks.append(Check("tools", "glibc", OK, glibc))
    try:
        version = _version([locks.uv_binary(settings.repo_root), "--version"])
    except locks.LockError:  # none on PATH nor in .tools/uv: a line of the table, not the end of it
        version = ""
    if version:
        checks.append(Check("tools", "uv", OK, version))
    else:
        checks.append(
            Check(
                "tools",
                "uv",
                WARN,
                "uv not found",
                "`make venv` installs it into .tools/uv; the kernel script bootstraps its own into WORKING_DIR",
            )
        )
    return checks


def kernel_checks(settings: Settings) -> list[Check]:
    from jupyter_client.kernelspec import KernelSpecManager

    manager = KernelSpecManager()
    specs = manager.find_kernel_specs()
    checks = []
    for manifest in kernels.manifests(settings.repo_root):
        name, venv = manifest.kernel_name, manifest.venv
        rebuild = f"make kernel THEME={manifest.theme} PY={manifest.py or settings.py} FORCE=1"
        python = venv / "bin/python"
        if not python.exists():
            checks.append(Check("kernel", name, FAIL, f"its venv {venv} no longer exists", rebuild))
            continue
        healthy = subprocess.run([str(python), "-c", "import ipykernel"], capture_output=True).returncode == 0
        smoke = manifest.smoke
        if not healthy:
            checks.append(Check("kernel", name, FAIL, f"{python} cannot import ipykernel (broken venv)", rebuild))
        elif smoke.startswith("FAILED"):
            checks.append(Check("kernel", name, FAIL, f"smoke test: {smoke}", rebuild))
        elif name not in specs:
            checks.append(
                Check(
                    "kernel",
                    name,
                    WARN,
                    "venv healthy but not registered with Jupyter",
                    "`inv kernels-restore` (the lifecycle script does it on every start)",
                )
            )
        elif problem := kernels.spec_problem(specs, name, venv):
            repair = f"make kernel THEME={manifest.theme} PY={manifest.py or settings.py} (registers it again)"
            checks.append(Check("kernel", name, FAIL, f"broken kernelspec: {problem}", repair))
        else:
            checks.append(Check("kernel", name, OK, f"registered, venv healthy, smoke test: {smoke or 'not recorded'}"))
    for name, folder in sorted(specs.items()):
        try:
            argv = json.loads((Path(folder) / "kernel.json").read_text()).get("argv", [])
        except (OSError, ValueError):
            continue
        if argv and os.path.isabs(argv[0]) and not Path(argv[0]).exists():
            checks.append(
                Check(
                    "kernel",
                    f"kernelspec {name}",
                    FAIL,
                    f"points at {argv[0]}, which no longer exists",
                    f"`jupyter kernelspec remove {name}` (or rebuild the kernel)",
                )
            )
    if not checks:
        checks.append(Check("kernel", "theme kernels", WARN, "none yet", "make kernel THEME=tabular PY=3.12"))
    return checks


IDLE_TIMER = Path("/etc/systemd/system/gs-ds-env-idle-stop.timer")  # what the lifecycle script installs


def lifecycle_checks(settings: Settings, notebook_root: Path, idle_timer: Path = IDLE_TIMER) -> list[Check]:
    if not notebook_root.is_dir():
        return [Check("lifecycle", "on-start script", OK, f"not a notebook instance (no {notebook_root})")]
    log = notebook_root / ".myenv/restore-kernels.log"
    if log.is_file():
        checks = [Check("lifecycle", "on-start script", OK, f"kernel restore ran (log {log})")]
    else:
        checks = [
            Check(
                "lifecycle",
                "on-start script",
                WARN,
                f"no {log}: kernels are not restored after a restart",
                "attach bin/gs-env-lifecycle-on-start.sh as the notebook's Start notebook lifecycle script",
            )
        ]
    idle_log = notebook_root / ".myenv/idle-stop.log"
    if not idle_timer.is_file():
        checks.append(
            Check("lifecycle", "idle auto-stop", WARN, "off: an idle instance keeps billing",
                  "set IDLE_STOP_MINUTES=60 for the lifecycle script (README: SageMaker notebook set-up)")
        )  # fmt: skip
    else:
        lines = idle_log.read_text(errors="replace").strip().splitlines() if idle_log.is_file() else []
        last = lines[-1].split("idle-stop: ", 1)[-1] if lines else "no check logged yet"
        checks.append(Check("lifecycle", "idle auto-stop", OK, f"on; last check: {last} (log {idle_log})"))
    return checks


def run(settings: Settings, threshold: float = 80.0, notebook_root: Path = NOTEBOOK_ROOT) -> list[Check]:
    return (
        disk_checks(settings, threshold, notebook_root)
        + usage_breakdown(settings)
        + docker_checks(notebook_root)
        + tool_checks(settings)
        + kernel_checks(settings)
        + leftover_checks(settings)
        + lifecycle_checks(settings, notebook_root)
    )


def leftover_checks(settings: Settings) -> list[Check]:
    """What a killed command of this project left running or lying around (ops/leftovers.py)."""
    from gs_ds_env.ops import leftovers

    found = leftovers.find(settings)
    if not found:
        return [Check("running", "leftovers", OK, "nothing a killed command left behind")]
    return [
        Check("running", f"leftover {item.kind}", WARN, item.what, f"`{item.remove_command}` removes it")
        for item in found
    ]


def failed(checks: list[Check]) -> bool:
    return any(check.status == FAIL for check in checks)


def table(checks: list[Check]) -> str:
    rows = [("status", "area", "check", "detail / fix")]
    for check in checks:
        rows.append(
            (
                check.status.upper() if check.status != OK else OK,
                check.area,
                check.name,
                check.detail + (f" -> fix: {check.fix}" if check.fix and check.status != OK else ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)), row[3]]) for row in rows
    )


def as_json(checks: list[Check]) -> str:
    return json.dumps({"ok": not failed(checks), "checks": [asdict(check) for check in checks]}, indent=2)
