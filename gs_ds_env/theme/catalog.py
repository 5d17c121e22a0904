"""`inv theme.list`: every theme with what it is and what has been built from it here."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from gs_ds_env.kernel import kernels
from gs_ds_env.settings import Settings


@dataclass(frozen=True)
class ThemeRow:
    name: str
    kind: str
    description: str
    python: str  # the theme's default Python
    lock_age_days: float | None  # None: no lock
    kernels: list[str]  # kernel names built from it
    images: list[str]  # local image tags (<theme>_<pyver>) built from it, or ["?"] without Docker
    created_by: str


def _lock_age_days(repo_root: Path, lock: Path) -> float | None:
    """Days since the lock last changed: its last commit when it is committed and unchanged, else its file time."""
    if not lock.is_file():
        return None
    changed = lock.stat().st_mtime
    log = subprocess.run(
        ["git", "log", "-1", "--format=%ct", "--", str(lock)], cwd=repo_root, capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "diff", "--quiet", "--", str(lock)], cwd=repo_root, capture_output=True)
    if log.returncode == 0 and log.stdout.strip() and dirty.returncode == 0:
        changed = float(log.stdout.strip())
    return max(0.0, (time.time() - changed) / 86400)


def _image_tags(settings: Settings) -> list[str] | None:
    """The plain tags (<theme>_<pyver>) of IMAGE_NAME here; None when Docker does not answer."""
    from docker.errors import DockerException

    import docker

    try:
        images = docker.from_env().images.list(name=settings.image_name)
    except DockerException:
        return None
    tags = {reference.rsplit(":", 1)[1] for image in images for reference in image.tags}
    return sorted(tag for tag in tags if re.fullmatch(r"[a-z0-9-]+_\d+", tag))  # not <theme>_<pyver>-<content>


def rows(settings: Settings) -> list[ThemeRow]:
    paths = settings.paths
    built_kernels = kernels.manifests(settings.repo_root)
    tags = _image_tags(settings)
    out = []
    for name in paths.themes():
        files = paths.theme(name)
        out.append(
            ThemeRow(
                name=name,
                kind=files.kind,
                description=files.description,
                python=files.default_python or settings.py,
                lock_age_days=_lock_age_days(settings.repo_root, files.lock),
                kernels=[m.kernel_name for m in built_kernels if m.theme == name and m.venv.is_dir()],
                images=["?"] if tags is None else [t for t in tags if t.rsplit("_", 1)[0] == name],
                created_by=files.created_by,
            )
        )
    return out


def format_table(found: list[ThemeRow]) -> str:
    header = ("theme", "kind", "python", "lock age", "kernel", "image", "description")
    lines = [header]
    for row in found:
        age = "no lock" if row.lock_age_days is None else f"{row.lock_age_days:.0f} d"
        lines.append(
            (row.name, row.kind, row.python, age, ", ".join(row.kernels) or "-", ", ".join(row.images) or "-",
             row.description + (" [yours]" if row.created_by else ""))
        )  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1] for line in lines
    )
