"""Theme kernels: create/restore through the bin/ scripts, list and remove through jupyter_client."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gs_ds_env.errors import GsError
from gs_ds_env.kernel import locks
from gs_ds_env.paths import Paths, dir_bytes
from gs_ds_env.settings import REPO_ROOT, Settings
from gs_ds_env.theme.files import KernelManifest


@dataclass
class KernelInfo:
    name: str
    theme: str
    python: str
    venv: Path
    venv_bytes: int
    status: str
    registered: str  # yes | no | broken (the spec does not parse or starts another python)
    smoke: str = ""  # the smoke test result: recorded at creation, or run now (list_kernels(smoke_now=True))


def script_env(settings: Settings) -> dict[str, str]:
    """What the kernel script would otherwise work out itself: resolved here, so under inv it parses nothing."""
    with_project = "1" if settings.theme_files.with_project else "0"
    env = {**os.environ, "WORKING_DIR": str(settings.working_dir), "KERNEL_WITH_PROJECT": with_project}
    try:
        env["UV"] = locks.uv_binary(settings.repo_root)
    except locks.LockError:
        env.pop("UV", None)  # none yet: the script installs one into WORKING_DIR
    return env


def create_kernel(settings: Settings, requirements: str | None = None, force: bool = False) -> None:
    cmd = [str(settings.repo_root / "bin/gs-env-create-kernel.sh")]
    if force:
        cmd.append("--force")
    cmd += [settings.theme, settings.py, requirements or "", settings.torch_backend]
    run_to_the_end(cmd, script_env(settings))


def run_to_the_end(cmd: list[str], env: dict[str, str]) -> None:
    """Run a bin/ script; on Ctrl-C, SIGTERM or SIGHUP let it finish its own rollback instead of killing it 0.25 s
    later as subprocess.run does, then re-raise. A terminal's Ctrl-C reached the script too; a SIGTERM or SIGHUP
    sent to this process alone is passed on to it."""
    process = subprocess.Popen(cmd, env=env)
    try:
        returncode = process.wait()
    except KeyboardInterrupt as interrupted:
        signum = getattr(interrupted, "signum", signal.SIGINT)
        if signum != signal.SIGINT and process.poll() is None:
            process.send_signal(signum)
        while process.poll() is None:  # a second signal must not cut the rollback short
            with contextlib.suppress(KeyboardInterrupt):
                process.wait()
        raise
    if returncode:
        raise subprocess.CalledProcessError(returncode, cmd)


def restore_kernels(settings: Settings) -> None:
    run_to_the_end([str(settings.repo_root / "bin/gs-env-restore-kernels.sh")], script_env(settings))


def _status(venv: Path) -> str:
    python = venv / "bin/python"
    if not venv.is_dir():
        return "venv missing"
    try:
        probe = subprocess.run([str(python), "-c", "import ipykernel"], capture_output=True)
    except OSError:  # no interpreter, or its base Python was removed (dangling symlink)
        return "python broken"
    return "ok" if probe.returncode == 0 else "python broken"


def manifests(repo_root: Path) -> list[KernelManifest]:
    """The kernel manifest of every theme folder that has one (themes/<theme>/kernel/manifest.env)."""
    found = [theme.kernel_manifest() for theme in Paths(repo_root).theme_folders()]
    return [manifest for manifest in found if manifest is not None]


def _recorded_smoke(manifest: KernelManifest) -> str:
    if not manifest.smoke:
        return "not recorded"
    return "passed" if ": ok" in manifest.smoke else manifest.smoke


def run_smoke(venv: Path, theme_dir: Path) -> str:
    smoke = theme_dir / "smoke.py"
    if not smoke.is_file():
        return "none"
    try:
        result = subprocess.run(
            [str(venv / "bin/python"), str(smoke)], cwd=theme_dir, capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"FAILED ({type(error).__name__})"
    if result.returncode == 0:
        return "passed"
    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return f"FAILED ({last[:80]})"


def spec_problem(specs: dict[str, str], name: str, venv: Path) -> str | None:
    """None when the kernelspec `name` is registered, parses and starts `venv`'s python; else what is wrong."""
    if name not in specs:
        return "not registered with Jupyter"
    spec_file = Path(specs[name]) / "kernel.json"
    try:
        argv = json.loads(spec_file.read_text(encoding="utf-8")).get("argv") or [""]
    except (OSError, ValueError, AttributeError) as error:
        return f"{spec_file} is unreadable ({type(error).__name__})"
    if not os.path.abspath(str(argv[0])).startswith(str(venv.absolute()) + os.sep):
        return f"{spec_file} starts {argv[0] or 'nothing'}, not {venv}/bin/python"
    return None


def _registered(specs: dict[str, str], name: str, venv: Path) -> str:
    if name not in specs:
        return "no"
    return "broken" if spec_problem(specs, name, venv) else "yes"


def list_kernels(repo_root: Path = REPO_ROOT, smoke_now: bool = False, theme: str | None = None) -> list[KernelInfo]:
    """Every theme kernel (or only `theme`'s); `smoke_now` runs each smoke test again instead of the recorded one."""
    from jupyter_client.kernelspec import KernelSpecManager  # ~0.2 s: imported by the tasks that list

    specs = KernelSpecManager().find_kernel_specs()
    rows = []
    for manifest in manifests(repo_root):
        if theme and manifest.theme != theme:
            continue
        venv = manifest.venv
        rows.append(
            KernelInfo(
                name=manifest.kernel_name,
                theme=manifest.theme,
                python=manifest.python_version or "?",
                venv=venv,
                venv_bytes=dir_bytes(venv) if venv.is_dir() else 0,
                status=_status(venv),
                registered=_registered(specs, manifest.kernel_name, venv),
                smoke=run_smoke(venv, manifest.path.parent.parent)
                if smoke_now and venv.is_dir()
                else _recorded_smoke(manifest),
            )
        )
    return rows


def format_table(rows: list[KernelInfo]) -> str:
    header = ("kernel", "theme", "python", "venv size", "status", "registered", "smoke test")
    lines = [header] + [
        (
            r.name,
            r.theme,
            r.python,
            f"{r.venv_bytes / 2**20:.0f} MiB",
            r.status,
            r.registered,
            r.smoke,
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


class KernelError(GsError, ValueError):
    """A kernel operation this project must refuse; the message says why and what to do instead."""


def remove_kernel(repo_root: Path, name: str, with_venv: bool, dry_run: bool) -> list[str]:
    """Remove the kernelspec `name` (and its theme venv with `with_venv`). Returns what was (or would be) done.

    Only kernels a theme manifest names, whose kernelspec runs that theme's venv, are this project's to remove:
    a user's own kernel, one found through JUPYTER_PATH, or `python3` is refused."""
    manifest = next((m for m in manifests(repo_root) if m.kernel_name == name), None)
    if manifest is None:
        raise KernelError(
            f"kernel {name!r} was not created by this project (no themes/*/kernel/manifest.env names "
            f"it): refusing; `inv kernels` lists this project's kernels"
        )
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    theme_venv = manifest.venv
    manager = KernelSpecManager()
    actions = []
    try:
        spec = manager.get_kernel_spec(name)
    except NoSuchKernel:
        spec = None
        actions.append(f"kernelspec {name} is not registered (nothing to remove)")
    if spec is not None:
        interpreter = Path(spec.argv[0]) if spec.argv else Path()
        if not interpreter.is_relative_to(theme_venv):
            raise KernelError(
                f"kernelspec {name} ({spec.resource_dir}) runs {interpreter}, not this project's venv "
                f"{theme_venv}: refusing; remove it with `jupyter kernelspec remove {name}` if you mean to"
            )
        actions.append(f"remove kernelspec {name} ({spec.resource_dir})")
    if with_venv:
        actions.append(f"delete venv {theme_venv}" if theme_venv.exists() else f"no venv found for {name}")
    if dry_run:
        return [f"[dry-run] would {a}" if a.startswith(("remove", "delete")) else a for a in actions]
    if spec is not None:
        manager.remove_kernel_spec(name)
    if with_venv and theme_venv.exists():
        shutil.rmtree(theme_venv)
        manifest.path.unlink(missing_ok=True)
    return actions
