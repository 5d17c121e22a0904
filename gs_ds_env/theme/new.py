"""`inv theme.new`: a theme folder from a template (themes/_templates/<template>/) or a copy of a theme, its lock
compiled, and the next commands printed. Everything is written into a staging folder under WORKING_DIR and moved
into place only when the lock compiles, so a failure or Ctrl-C leaves no half-made theme, and a stage a killed
command left is removed by the next `inv theme.new`. The theme records what it wrote (FILES_RECORD, with each
file's sha256): `inv theme.remove` removes those and keeps anything else, the user's."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
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
FILES_RECORD = ".theme-new.json"  # in the theme: every file `inv theme.new` wrote, with its sha256
STAGE_PREFIX = "theme-new-"  # WORKING_DIR/stages/theme-new-<pid>-...: a theme being made
# Never copied from a theme: its kernel's build state and caches.
NOT_COPIED = shutil.ignore_patterns(
    ".venv*", "manifest.env", ".build.lock", ".kernelspec.previous", "__pycache__", ".theme-new.json"
)


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
        elif (self.root / "example/process.py").is_file():
            steps.append(
                f"inv process --theme {self.name} --py {self.python} --code themes/{self.name}/example/process.py "
                "--output daily"
            )
        return steps


def _requirements(add: list[str] | str | None) -> list[str]:
    """One requirement per --add, as pip reads a line of requirements.txt (`name @ url`, markers with spaces)."""
    wanted = [add] if isinstance(add, str) else list(add or [])
    for text in wanted:
        if not text.strip() or "\n" in text:
            raise ConfigError(f"--add {text!r} is not one requirement: give one per --add, e.g. --add 'polars>=1.0'")
        try:
            Requirement(text)
        except InvalidRequirement as error:
            raise ConfigError(
                f"--add {text!r} is not a requirement ({error}): one per --add, e.g. --add 'polars>=1.0' --add duckdb"
            ) from None
    return [text.strip() for text in wanted]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def record_files(theme: Path) -> None:
    """FILES_RECORD: every file now in the new theme and its sha256 (what theme.remove may take away)."""
    files = {
        str(p.relative_to(theme)): sha256(p)
        for p in sorted(theme.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != FILES_RECORD
    }
    (theme / FILES_RECORD).write_text(json.dumps({"files": files}, indent=1) + "\n")


def _stages(settings: Settings) -> Path:
    return settings.working_dir / "stages"


def remove_stale_stages(settings: Settings) -> list[Path]:
    """Stages of `inv theme.new` runs that were killed (their process is gone), and the pre-WORKING_DIR ones a killed
    run left in the checkout (.gs-theme-new-*, older than an hour): removed, and named."""
    from gs_ds_env.ops import leftovers

    removed = []
    for stage in sorted(_stages(settings).glob(f"{STAGE_PREFIX}*")):
        owner = (stage / "owner").read_text().strip() if (stage / "owner").is_file() else ""
        if not owner or not leftovers.alive(owner):
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
    for stage in sorted(settings.repo_root.glob(".gs-theme-new-*")):
        if stage.is_dir() and not stage.is_symlink() and time.time() - stage.stat().st_mtime > 3600:
            shutil.rmtree(stage, ignore_errors=True)
            removed.append(stage)
    for partial in sorted(Paths(settings.repo_root).themes_root.glob(".*.partial")):
        if partial.is_dir() and time.time() - partial.stat().st_mtime > 3600:
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed


def _move_into_place(theme: Path, final: Path) -> None:
    """The staged theme into themes/: a rename on one disk; else a copy beside the final name, then a rename, so
    themes/NAME is never half there."""
    try:
        os.rename(theme, final)  # fails rather than merges if the name was taken meanwhile
        return
    except OSError as error:
        if error.errno != 18:  # EXDEV: WORKING_DIR is on another disk
            raise ThemeError(f"cannot create themes/{final.name}: {error.strerror}; nothing was written") from None
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(theme, partial, symlinks=True)
    try:
        os.rename(partial, final)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise ThemeError(f"cannot create themes/{final.name}: {error.strerror}; nothing was written") from None


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


def _source(repo: Path, name: str, template: str | None, from_theme: str | None) -> tuple[Path, str, str, dict]:
    """What the new theme is copied from (a theme, or a template: ds by default), its description, how the new
    theme.env names its origin, and what to rewrite in the copy."""
    if from_theme:
        if from_theme not in locks.themes(repo):  # a name, never a path: --from ../themes/x is not a theme's name
            raise ConfigError(
                f"--from {from_theme!r} is not a theme's name: choose one of {', '.join(locks.themes(repo))}"
            )
        replacements = {f"themes/{from_theme}/": f"themes/{name}/", f"--theme {from_theme}": f"--theme {name}",
                        f"smoke {from_theme}:": f"smoke {name}:"}  # fmt: skip
        source = Paths(repo).theme(from_theme)
        return source.root, source.description or from_theme, f"from theme {from_theme}", replacements
    known = templates(repo)
    template = template or "ds"
    if template not in known:
        raise ConfigError(
            f"--template {template!r} does not exist: choose one of {', '.join(known)} (themes/_templates/)"
        )
    return known[template].root, known[template].description, f"template {template}", {}


def create(
    settings: Settings,
    name: str,
    template: str | None = None,
    from_theme: str | None = None,
    python: str | None = None,
    add: list[str] | str | None = None,
    description: str | None = None,
) -> NewTheme:
    repo = settings.repo_root
    names.check_new(repo, name)
    if template and from_theme:
        raise ConfigError("give --template or --from, not both")
    source_root, default_description, origin, replacements = _source(repo, name, template, from_theme)
    python = _python(repo, python or settings.py)
    requirements = _requirements(add)
    description = " ".join((description or default_description).split())
    replacements |= {"{{THEME}}": name, "{{PYTHON}}": python, "{{DESCRIPTION}}": description}

    # The staging folder is a miniature repository (themes/NAME beside a link to docker/), so the lock's comments
    # name themes/NAME/... exactly as `inv lock` would write them. It lives under WORKING_DIR, owned by this process.
    from gs_ds_env.ops import leftovers

    for stale in remove_stale_stages(settings):
        print(f"[theme] removed {stale}: the stage of an `inv theme.new` that was killed", flush=True)
    _stages(settings).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=_stages(settings)))
    (staging / "owner").write_text(leftovers.owner() + "\n")
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
        record_files(theme)
        final = Paths(repo).theme(name).root
        if final.exists():
            raise ThemeError(f"themes/{name} was created meanwhile by something else; nothing was written")
        _move_into_place(theme, final)
    except locks.LockError as error:
        raise ThemeError(f"{error}; nothing was written") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return NewTheme(name, final, origin, python, settings.paths.theme(name).kind)
