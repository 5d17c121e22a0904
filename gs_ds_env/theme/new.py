"""`inv theme.new`: a theme folder from a template (themes/_templates/<template>/) or a copy of a theme, its lock
compiled, and the next commands printed. Everything is written into a staging folder beside themes/ and moved into
place only when the lock compiles, so a failure or Ctrl-C leaves no half-made theme."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dotenv import dotenv_values
from packaging.requirements import InvalidRequirement, Requirement

from gs_ds_env.kernel import locks
from gs_ds_env.paths import Paths
from gs_ds_env.settings import ConfigError, Settings
from gs_ds_env.theme import ThemeError, names

CREATED_KEY = "CREATED_BY"  # in theme.env: what `inv theme.remove` may remove
# Never copied from a theme: its kernel's build state and caches.
NOT_COPIED = shutil.ignore_patterns(".venv*", "manifest.env", ".build.lock", ".kernelspec.previous", "__pycache__")


@dataclass(frozen=True)
class Template:
    name: str
    root: Path
    description: str


def templates(repo_root: Path) -> dict[str, Template]:
    found = {}
    for root in sorted(Paths(repo_root).templates.glob("*/template.env")):
        values = dotenv_values(root)
        found[root.parent.name] = Template(root.parent.name, root.parent, values.get("DESCRIPTION") or "")
    return found


@dataclass(frozen=True)
class NewTheme:
    name: str
    root: Path
    origin: str  # "template ds" or "theme tabular"
    python: str
    kind: str

    def next_steps(self) -> list[str]:
        steps = [
            f"inv kernel --theme {self.name} --py {self.python}     # the notebook kernel {self.name}_{self.python.replace('.', '')}",
            f"inv build --theme {self.name} --py {self.python}      # its image (smoke test included)",
        ]
        if self.kind == "app":
            return [*steps, f"inv app --theme {self.name} --py {self.python}        # the app in its image"]
        if (self.root / "example/train.py").is_file():
            steps.append(
                f"inv train --theme {self.name} --py {self.python} --entry-point themes/{self.name}/example/train.py"
            )
        return steps


def _requirements(add: str | None) -> list[str]:
    wanted = shlex.split(add or "")
    for text in wanted:
        try:
            Requirement(text)
        except InvalidRequirement:
            raise ConfigError(f"--add {text!r} is not a requirement: e.g. --add 'polars>=1.0 duckdb'") from None
    return wanted


def _python(repo_root: Path, python: str) -> str:
    if not locks.pinned_base_image(repo_root, python):
        known = sorted(
            k.removeprefix("BASE_IMAGE_").replace("_", ".")
            for k in locks.pins(repo_root)
            if k.startswith("BASE_IMAGE_")
        )
        raise ConfigError(f"--python {python!r} has no base image in docker/pins.env: use one of {', '.join(known)}")
    return python


def _render(root: Path, replacements: dict[str, str]) -> None:
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # a binary file is copied as it is
        for old, new in replacements.items():
            text = text.replace(old, new)
        path.write_text(text)


def _theme_env(path: Path, description: str, python: str, origin: str) -> None:
    """theme.env: the description as its first line (what `inv theme.list` shows), the default Python, the keys
    the source had (KIND, ...), and what made it."""
    lines = path.read_text().splitlines()
    if lines and lines[0].startswith("#"):
        lines = lines[1:]
    kept = [line for line in lines if not line.startswith(("DEFAULT_PYTHON=", f"{CREATED_KEY}="))]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    lines = [f"# {description}", f"DEFAULT_PYTHON={python}", *kept, f'{CREATED_KEY}="inv theme.new, {origin}, {stamp}"']
    path.write_text("\n".join(lines) + "\n")


def create(
    settings: Settings,
    name: str,
    template: str | None = None,
    from_theme: str | None = None,
    python: str | None = None,
    add: str | None = None,
    description: str | None = None,
) -> NewTheme:
    repo = settings.repo_root
    names.check_new(repo, name)
    if template and from_theme:
        raise ConfigError("give --template or --from, not both")
    known = templates(repo)
    if from_theme:
        source_root = Paths(repo).theme(from_theme).root
        if from_theme.startswith("_") or not (source_root / "kernel/requirements.txt").is_file():
            raise ConfigError(f"--from {from_theme!r} is not a theme: choose one of {', '.join(locks.themes(repo))}")
        default_description = Paths(repo).theme(from_theme).description or from_theme
        origin = f"from theme {from_theme}"
        replacements = {f"themes/{from_theme}/": f"themes/{name}/", f"--theme {from_theme}": f"--theme {name}",
                        f"smoke {from_theme}:": f"smoke {name}:"}  # fmt: skip
    else:
        template = template or "ds"
        if template not in known:
            raise ConfigError(
                f"--template {template!r} does not exist: choose one of {', '.join(known)} (themes/_templates/)"
            )
        source_root, default_description = known[template].root, known[template].description
        origin = f"template {template}"
        replacements = {}
    python = _python(repo, python or settings.py)
    requirements = _requirements(add)
    description = " ".join((description or default_description).split())
    replacements |= {"{{THEME}}": name, "{{PYTHON}}": python, "{{DESCRIPTION}}": description}

    # The staging folder is a miniature repository (themes/NAME beside a link to docker/), so the lock's comments
    # name themes/NAME/... exactly as `inv lock` would write them; it is on the same disk, so the move is atomic.
    staging = Path(tempfile.mkdtemp(prefix=".gs-theme-new-", dir=repo))
    try:
        theme = Paths(staging).theme(name).root
        shutil.copytree(source_root, theme, ignore=NOT_COPIED)
        (theme / "template.env").unlink(missing_ok=True)
        _render(theme, replacements)
        _theme_env(theme / "theme.env", description, python, origin)
        if requirements:
            image_list = theme / "docker/requirements.txt"
            image_list.write_text(image_list.read_text().rstrip("\n") + "\n# --add\n" + "\n".join(requirements) + "\n")
        for shared in ("docker", ".tools"):  # the toolkit and serving lists; the uv `make venv` installed
            if (repo / shared).exists():
                os.symlink(repo / shared, staging / shared)
        print(f"[theme] {name}: {origin}, Python {python}; compiling its lock (uv pip compile)...", flush=True)
        locks.lock(staging, name, cache_dir=settings.paths.uv_cache)
        final = Paths(repo).theme(name).root
        try:
            os.rename(theme, final)  # fails rather than merges if the name was taken meanwhile
        except OSError as error:
            raise ThemeError(f"cannot create themes/{name}: {error.strerror}; nothing was written") from None
    except locks.LockError as error:
        raise ThemeError(f"{error}; nothing was written") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return NewTheme(name, final, origin, python, settings.paths.theme(name).kind)
