"""`inv kernel.*` — Kernels: a theme's venv and Jupyter kernel, its lock, kernel <-> image parity."""

from __future__ import annotations

from invoke import Exit, task

from gs_ds_env.settings import load_settings

from .common import clear_errors, group


@task(
    help={
        "theme": "theme under themes/",
        "py": "Python 3.N",
        "requirements": "requirements file",
        "torch": "uv --torch-backend (auto, cpu, cu126, none)",
        "force": "rebuild even if up to date",
    }
)
@clear_errors
def kernel(c, theme=None, py=None, requirements=None, torch=None, force=False):
    """Create or update the theme's venv and Jupyter kernel <theme>_<pyver>."""
    from gs_ds_env.kernel import kernels as kernels_mod

    kernels_mod.create_kernel(load_settings(theme=theme, py=py, torch_backend=torch), requirements, force)


@task(
    help={
        "smoke": "run each theme's smoke test in its venv now (default: the result recorded at creation)",
        "theme": "only this theme's kernel",
    }
)
@clear_errors
def kernels(c, smoke=False, theme=None):
    """Table of theme kernels: name, theme, Python, venv size, status, smoke test."""
    from gs_ds_env.kernel import kernels as kernels_mod

    settings = load_settings(theme=theme)
    rows = kernels_mod.list_kernels(settings.repo_root, smoke_now=smoke, theme=theme)
    print(kernels_mod.format_table(rows) if rows else "no theme kernels yet: make kernel THEME=tabular PY=3.12")
    if any(row.smoke.startswith("FAILED") for row in rows):
        raise Exit("error: a smoke test failed: rebuild that kernel (make kernel THEME=... FORCE=1)", code=1)


@task(
    name="kernel-remove",
    help={
        "name": "kernel name, e.g. tabular_312",
        "venv": "also delete the venv",
        "dry_run": "print what would be removed",
    },
)
@clear_errors
def kernel_remove(c, name, venv=False, dry_run=False):
    """Remove a kernelspec (and its venv with --venv)."""
    from gs_ds_env.kernel import kernels as kernels_mod

    for line in kernels_mod.remove_kernel(load_settings().repo_root, name, venv, dry_run):
        print(line)


@task(name="kernels-restore")
@clear_errors
def kernels_restore(c):
    """Re-register every kernel from its manifest (after a SageMaker notebook restart)."""
    from gs_ds_env.kernel import kernels as kernels_mod

    kernels_mod.restore_kernels(load_settings())


@task(
    help={
        "theme": "one theme (default: every theme)",
        "upgrade": "move every pin to the newest allowed version",
        "check": "only report whether re-locking would change a lock (exit 1 if so)",
        "base": "also refresh the base images' digests in docker/pins.env (needs Docker Hub)",
    }
)
@clear_errors
def lock(c, theme=None, upgrade=False, check=False, base=False):
    """(Re)lock themes/<theme>/requirements.lock with uv pip compile (universal, Python >= 3.11)."""
    from gs_ds_env.kernel import locks as locks_mod

    settings = load_settings()
    repo_root, cache_dir = settings.repo_root, settings.paths.uv_cache
    chosen = [theme] if theme else locks_mod.themes(repo_root)
    if check:
        stale = {name: locks_mod.stale(repo_root, name, cache_dir) for name in chosen}
        for name, lines in stale.items():
            print(f"{name}: {'up to date' if not lines else f'{len(lines)} line(s) would change'}")
            print("\n".join(f"  {line}" for line in lines[:20]))
        if any(stale.values()):
            raise Exit("error: a lock is stale: run inv lock and commit the result", code=1)
        return
    for name in chosen:
        print(f"locked {locks_mod.lock(repo_root, name, upgrade=upgrade, cache_dir=cache_dir).relative_to(repo_root)}")
    if base:
        for line in locks_mod.refresh_base_images(repo_root, ["3.11", "3.12", "3.13"]):
            print(f"pinned {line}")


@task(help={"theme": "theme", "py": "Python 3.N", "workspace": "compare with the workspace image (inv lab)"})
@clear_errors
def parity(c, theme=None, py=None, workspace=False):
    """Every package in both the kernel venv and the theme image, with both versions; exit 1 on any difference."""
    from gs_ds_env import image
    from gs_ds_env.kernel import parity as parity_mod

    settings = load_settings(theme=theme, py=py)
    built = image.build(settings, workspace=workspace)
    result = parity_mod.check(settings.kernel_name, settings.theme_files.venv, built.local_ref)
    print(result.table())
    if not result.ok:
        raise Exit(f"error: {result.summary()}", code=1)


namespace = group(
    "kernel",
    ("create", kernel),
    ("list", kernels),
    ("remove", kernel_remove),
    ("restore", kernels_restore),
    ("lock", lock),
    ("parity", parity),
    default=kernel,
)
