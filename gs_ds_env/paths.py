"""Every path the project uses, from one object (as pipx's paths.py): the checkout's runs/ and data/, where the themes
are (each theme's own files: gs_ds_env/theme/files.py), and WORKING_DIR's caches. bin/gs-env-create-kernel.sh lays out WORKING_DIR the same way for standalone use
(a lifecycle script runs it without Python); the names here are those."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import dotenv_values

if TYPE_CHECKING:
    from gs_ds_env.theme.files import Theme


# The checkout this package was imported from (tests and `inv --search-root` pass another root to Paths).
REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_PYTHON = "3.11"  # the oldest Python the theme locks cover (`uv pip compile --universal --python-version`)
# What a copy of the repository needs beside themes/: the tabular kernel installs this project (KERNEL_WITH_PROJECT).
PROJECT_PACKAGE = ("pyproject.toml", "README.md", "gs_ds_env", "training")
# What goes where under WORKING_DIR: layout.env, read by bin/lib.sh too.
LAYOUT = {key: value or "" for key, value in dotenv_values(Path(__file__).with_name("layout.env")).items()}


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
        return self._working(LAYOUT["UV_CACHE_DIR"])

    @property
    def pip_cache(self) -> Path:
        return self._working(LAYOUT["PIP_CACHE_DIR"])

    @property
    def pythons(self) -> Path:
        """Pythons uv downloads (UV_PYTHON_INSTALL_DIR)."""
        return self._working(LAYOUT["UV_PYTHON_INSTALL_DIR"])

    def image_packages(self, image_id: str) -> Path:
        """What a theme image holds (Python, packages), listed once per image id: an id names its content."""
        return self._working(LAYOUT["IMAGE_LISTINGS"]) / f"{image_id.removeprefix('sha256:')}.json"

    @property
    def themes_root(self) -> Path:
        return self.repo_root / "themes"

    @property
    def templates(self) -> Path:
        """themes/_templates/: what `inv theme.new` makes a theme from (not a theme itself)."""
        return self.themes_root / "_templates"

    def theme(self, name: str) -> Theme:
        from gs_ds_env.theme.files import Theme  # the theme object lives with its namespace; it needs these paths

        return Theme(self.themes_root / name)

    def theme_folders(self) -> list[Theme]:
        """Every folder under themes/ but _templates/ and hidden ones, lists or not (a theme whose lists are gone
        may still hold a kernel venv and manifest: they stay listable and removable)."""
        root = self.themes_root
        if not root.is_dir():
            return []
        return [self.theme(p.name) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(("_", "."))]

    def themes(self) -> list[str]:
        """Every theme (a folder with kernel/requirements.txt); _templates/ and hidden folders are not themes."""
        found = self.themes_root.glob("*/kernel/requirements.txt")
        return sorted(p.parent.parent.name for p in found if not p.parent.parent.name.startswith(("_", ".")))


def dir_bytes(path: Path) -> int:
    """Bytes a venv really adds: files hardlinked from uv's cache are counted once, as `du` does."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total
