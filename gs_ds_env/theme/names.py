"""What a new theme may be called. The name becomes the folder themes/NAME, the kernel NAME_<pyver> (its `_` is the
separator, so a name has none), the image tag NAME_<pyver>-<content hash> (at most 128 characters) and part of
SageMaker names (63 characters, letters, digits and '-'): lowercase letters, digits and single hyphens, starting
with a letter, at most 32 characters so the SageMaker names keep room for the job prefix and a timestamp."""

from __future__ import annotations

import re
from pathlib import Path

from gs_ds_env.paths import Paths
from gs_ds_env.settings import THEME_NAME, ConfigError

NAME = re.compile(THEME_NAME)
MAX_LENGTH = 32
# Words a command reads as something other than a theme (`--theme all`, a default) or the project's own folders.
RESERVED = frozenset({"all", "any", "none", "default", "base", "new", "list", "remove", "check", "templates"})


def check_new(repo_root: Path, name: str) -> None:
    """Refuse, in one line, a name no theme could carry or one already taken. Writes nothing."""
    if not NAME.fullmatch(name or ""):
        if len(name) > MAX_LENGTH:
            why = f"is {len(name)} characters long (at most {MAX_LENGTH})"
        else:
            why = "is not lowercase letters, digits and single '-', starting with a letter"
        raise ConfigError(f"theme name {name!r} {why}: e.g. nlp, spark-etl, team2-ds")
    if name in RESERVED:
        raise ConfigError(f"theme name {name!r} is reserved (commands read it as something else): choose another")
    if Paths(repo_root).theme(name).root.exists():
        raise ConfigError(f"theme {name!r} already exists (themes/{name}/): choose another name, or --from {name}")
