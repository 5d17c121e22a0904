"""The theme object: one theme's folder and files, what its theme.env says and what its kernel's manifest.env recorded
(written by bin/gs-env-create-kernel.sh). Every module that needs a fact about a theme asks it here."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

from dotenv import dotenv_values

LOCK_NAME = "requirements.lock"
# What a training theme's lock and image add to its own lists (relative to the repository root): the training toolkit,
# and beside it the serving stack.
TOOLKIT_REQUIREMENTS = "docker/toolkit.txt"
SERVING_REQUIREMENTS = "docker/serving.txt"


@dataclass(frozen=True)
class Theme:
    """One theme: its folder, every file of it, what its theme.env says (read once) and its kernel's manifest. The one
    reader of both files in Python; the bin/ scripts read them standalone, by the same rules (python-dotenv's)."""

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
    def theme_env(self) -> Path:
        return self.root / "theme.env"

    @functools.cached_property
    def _properties(self) -> dict[str, str]:
        if not self.theme_env.is_file():
            return {}
        return {k: (v or "").split("#")[0].strip() for k, v in dotenv_values(self.theme_env).items()}

    @property
    def kind(self) -> str:
        """training (the image gets the SageMaker toolkit and serving stack) or app (theme.env KIND=app)."""
        return "app" if self._properties.get("KIND", "").split()[:1] == ["app"] else "training"

    @property
    def description(self) -> str:
        """theme.env's first line, a comment saying what the theme is for."""
        first = self.theme_env.read_text().splitlines()[:1] if self.theme_env.is_file() else []
        return first[0].lstrip("#").strip() if first and first[0].startswith("#") else ""

    @property
    def with_project(self) -> bool:
        """The kernel also holds this project's package, editable (theme.env KERNEL_WITH_PROJECT=1: notebooks that drive
        training jobs)."""
        return self._properties.get("KERNEL_WITH_PROJECT", "").split()[:1] == ["1"]

    @property
    def default_python(self) -> str:
        return self._properties.get("DEFAULT_PYTHON", "")

    @property
    def created_by(self) -> str:
        """What made the theme, when `inv theme.new` did (theme.env CREATED_BY); "" for a theme of the project."""
        return self._properties.get("CREATED_BY", "")

    @property
    def toolkit_requirements(self) -> Path | None:
        """docker/toolkit.txt for a training theme; None for an app theme (theme.env KIND=app)."""
        if self.kind == "app":
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

    def kernel_manifest(self) -> KernelManifest | None:
        """What the kernel script recorded when it built this theme's kernel (None: never built here)."""
        if not self.manifest.is_file():
            return None
        # The kernel script writes it; damaged bytes (a bad disk, a hand edit) show as U+FFFD, never a traceback.
        values = dotenv_values(stream=io.StringIO(self.manifest.read_bytes().decode("utf-8", errors="replace")))
        return KernelManifest(
            self,
            kernel_name=values.get("KERNEL_NAME") or "?",
            theme=values.get("THEME") or self.theme,
            python_version=values.get("PYTHON_VERSION") or "",
            smoke=values.get("SMOKE") or "",
        )


@dataclass(frozen=True)
class KernelManifest:
    """themes/<theme>/kernel/manifest.env as bin/gs-env-create-kernel.sh wrote it; the one reader in Python."""

    files: Theme  # the theme holding it
    kernel_name: str
    theme: str
    python_version: str  # the full version, e.g. 3.11.7 ("" if unrecorded)
    smoke: str  # the smoke test's last line at creation ("" if unrecorded)

    @property
    def path(self) -> Path:
        return self.files.manifest

    @property
    def venv(self) -> Path:
        return self.files.venv

    @property
    def py(self) -> str:
        """3.N, as PY= takes it."""
        return ".".join(self.python_version.split(".")[:2])
