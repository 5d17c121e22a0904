"""Every path the project uses, from one object (as pipx's paths.py): the checkout's runs/ and data/, each theme's
files, and WORKING_DIR's caches. bin/gs-env-create-kernel.sh lays out WORKING_DIR the same way for standalone use
(a lifecycle script runs it without Python); the names here are those."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

LOCK_NAME = "requirements.lock"
TOOLKIT_REQUIREMENTS = "docker/toolkit.txt"  # relative to the repository root
SERVING_REQUIREMENTS = "docker/serving.txt"  # the serving stack, beside the toolkit in a training image
# What a copy of the repository needs beside themes/: the tabular kernel installs this project (KERNEL_WITH_PROJECT).
PROJECT_PACKAGE = ("pyproject.toml", "README.md", "gs_ds_env", "training")


@dataclass(frozen=True)
class Paths:
    repo_root: Path
    working_dir: Path | None = None  # WORKING_DIR: caches and managed Pythons (a notebook instance's persistent volume)

    @property
    def runs(self) -> Path:
        """runs/<job>/: model.tar.gz, output.tar.gz, run.json, report.md (and runs/notebooks/)."""
        return self.repo_root / "runs"

    def run(self, job_name: str) -> Path:
        return self.runs / job_name

    @property
    def data(self) -> Path:
        """data/raw/titanic.csv (verified download) and data/staged/<key>/{train,validation}/."""
        return self.repo_root / "data"

    def _working(self, relative: str) -> Path:
        if self.working_dir is None:
            raise ValueError("these Paths have no WORKING_DIR: build them from the settings (settings.paths)")
        return self.working_dir / relative

    @property
    def uv_cache(self) -> Path:
        return self._working("cache/uv")

    @property
    def pip_cache(self) -> Path:
        return self._working("cache/pip")

    @property
    def pythons(self) -> Path:
        """Pythons uv downloads (UV_PYTHON_INSTALL_DIR)."""
        return self._working("python")

    def theme(self, name: str) -> ThemeFiles:
        return ThemeFiles(self.repo_root / "themes" / name)

    def themes(self) -> list[str]:
        return sorted(p.parent.parent.name for p in (self.repo_root / "themes").glob("*/kernel/requirements.txt"))


@dataclass(frozen=True)
class ThemeFiles:
    """Every path of one theme, from one place."""

    root: Path

    @property
    def theme(self) -> str:
        return self.root.name

    @property
    def lock(self) -> Path:
        return self.root / LOCK_NAME

    @property
    def kernel_requirements(self) -> Path:
        return self.root / "kernel/requirements.txt"

    @property
    def image_requirements(self) -> Path:
        return self.root / "docker/requirements.txt"

    @property
    def toolkit_requirements(self) -> Path | None:
        """docker/toolkit.txt for a training theme; None for an app theme (theme.env KIND=app)."""
        settings = dotenv_values(self.root / "theme.env") if (self.root / "theme.env").is_file() else {}
        if (settings.get("KIND") or "training").split()[0] == "app":
            return None
        return self.root.parent.parent / TOOLKIT_REQUIREMENTS

    @property
    def smoke(self) -> Path:
        return self.root / "smoke.py"

    @property
    def venv(self) -> Path:
        return self.root / "kernel/.venv"

    @property
    def manifest(self) -> Path:
        return self.root / "kernel/manifest.env"
