"""Theme locks: one universal `uv pip compile` lock per theme, and the pinned inputs every image shares.

`themes/<theme>/requirements.lock` pins every package of the kernel's and the image's requirement lists for
every Python >= MIN_PYTHON (markers select per version and platform). The kernel installs its lists under that
lock, the image its leaner list under the same lock, so a package both have is the same version in both.
`docker/pins.env` pins the base image of each Python by digest and the uv the image installs with.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from dotenv import dotenv_values
from packaging.requirements import Requirement

from gs_ds_env.errors import GsError
from gs_ds_env.paths import MIN_PYTHON, REPO_ROOT, Paths
from gs_ds_env.theme.files import LOCK_NAME, SERVING_REQUIREMENTS, TOOLKIT_REQUIREMENTS, Theme

PINS_FILE = "docker/pins.env"


class LockError(GsError):
    """A lock is missing, stale or cannot be made; the message says how to fix it."""


def themes(repo_root: Path) -> list[str]:
    return Paths(repo_root).themes()


def uv_binary(repo_root: Path) -> str:
    """uv on PATH, else the one `make venv` bootstrapped into .tools/uv (of this checkout or of `repo_root`)."""
    candidates = [shutil.which("uv"), *(str(root / ".tools/uv/bin/uv") for root in (repo_root, REPO_ROOT))]
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if not found:
        raise LockError("uv was not found: run `make venv` (it installs uv into .tools/uv) or put uv on PATH")
    return found


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compile_command(files: Theme, output: Path, uv: str, upgrade: bool = False) -> list[str]:
    """`uv pip compile` for one theme, run from the repository root so the lock's comments hold relative paths."""
    command = [
        uv,
        "pip",
        "compile",
        "--quiet",
        "--universal",
        "--python-version",
        MIN_PYTHON,
        "--custom-compile-command",
        f"inv lock --theme {files.theme}   (universal: Python >= {MIN_PYTHON}, torch from PyPI)",
        str(files.kernel_requirements.relative_to(files.root.parent.parent)),
        str(files.image_requirements.relative_to(files.root.parent.parent)),
        *([TOOLKIT_REQUIREMENTS, SERVING_REQUIREMENTS] if files.toolkit_requirements else []),
        "--output-file",
        str(output),
    ]
    return command + (["--upgrade"] if upgrade else [])


# A pin that changes inside one Python minor, e.g. `soupsieve==2.10 ; python_full_version < '3.11.5'`: a kernel
# on 3.11.7 and an image on 3.11.2 would install different versions of it.
PATCH_LEVEL_FORK = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) ; .*python_full_version < '\d+\.\d+\.[1-9]\d*'")


def patch_level_forks(lock_text: str) -> dict[str, str]:
    """{package: the version pinned below the patch boundary} for every pin that forks inside a Python minor."""
    return {m.group(1): m.group(2) for m in map(PATCH_LEVEL_FORK.match, lock_text.splitlines()) if m}


def _without_constraint_notes(lock_text: str, constraints: Path) -> str:
    """Drop uv's `-c <constraints file>` from the `# via` notes, written as uv writes a note with one source."""
    lines, out, i = lock_text.splitlines(), [], 0
    while i < len(lines):
        if lines[i] != "    # via":
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].startswith("    #   "):
            j += 1
        sources = [line for line in lines[i + 1 : j] if line.strip() != f"#   -c {constraints}"]
        out += [f"    # via {sources[0].removeprefix('    #   ')}"] if len(sources) == 1 else [lines[i], *sources]
        i = j
    return "\n".join(out) + "\n"


def uv_reason(stderr: str) -> str:
    """The cause in uv's failure output (its `Because …` sentence, else its `error:` line), not the hint after it."""
    lines = [line.strip().lstrip("×╰─▶│ ").strip().removeprefix("cause:").strip() for line in stderr.splitlines()]
    for number, line in enumerate(lines):
        if line.startswith("Because"):
            sentence = [line]
            for following in lines[number + 1 :]:
                if not following or following.startswith(("hint:", "help:")):
                    break
                sentence.append(following)
            return " ".join(sentence)
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[0].removeprefix("error:").strip()
    meaningful = [line for line in lines if line and not line.startswith(("hint:", "help:"))]
    return (meaningful or ["no output"])[-1]


def _compile(repo_root: Path, files: Theme, output: Path, upgrade: bool, cache_dir: Path | None) -> None:
    """uv pip compile, then once more if a pin forks inside a Python minor: the version below the boundary for
    every patch release, so the kernel and the image agree whatever their patch versions (uv's
    `--fork-strategy fewest` would do it for every package, across minors too)."""
    # A user's UV_TORCH_BACKEND would make the lock depend on their machine: the lock is always PyPI's.
    env = {k: v for k, v in os.environ.items() if k not in {"UV_TORCH_BACKEND", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL"}}
    if cache_dir:
        env["UV_CACHE_DIR"] = str(cache_dir)  # under WORKING_DIR, not ~/.cache on the root disk
    command = compile_command(files, output, uv_binary(repo_root), upgrade)
    for attempt in range(2):
        result = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise LockError(f"cannot lock theme {files.theme}: {uv_reason(result.stderr)}")
        forks = patch_level_forks(output.read_text())
        if not forks:
            break
        if attempt:
            raise LockError(f"cannot lock theme {files.theme} with one version per Python minor: {forks}")
        constraints = output.with_name("patch-level-pins.txt")
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in forks.items()))
        command = [*command, "--constraint", str(constraints)]
    if "--constraint" in command:
        output.write_text(_without_constraint_notes(output.read_text(), constraints))


def lock(repo_root: Path, theme: str, upgrade: bool = False, cache_dir: Path | None = None) -> Path:
    """(Re)write the theme's lock. Without `upgrade`, pins already in the lock are kept where still valid."""
    files = Paths(repo_root).theme(theme)
    if not files.kernel_requirements.is_file():
        raise LockError(f"theme {theme!r} has no kernel/requirements.txt; themes: {', '.join(themes(repo_root))}")
    with tempfile.TemporaryDirectory() as tmp:
        draft = Path(tmp) / LOCK_NAME
        if files.lock.is_file():
            shutil.copy2(files.lock, draft)  # uv prefers the versions of the file it writes to
        _compile(repo_root, files, draft, upgrade, cache_dir)
        shutil.move(draft, files.lock)  # replaced only when the compile worked
    return files.lock


def stale(repo_root: Path, theme: str, cache_dir: Path | None = None) -> list[str]:
    """Lines that re-locking would change (empty: the lock matches its inputs). Writes nothing."""
    files = Paths(repo_root).theme(theme)
    if not files.lock.is_file():
        return [f"{files.lock.relative_to(repo_root)} is missing"]
    with tempfile.TemporaryDirectory() as tmp:
        draft = Path(tmp) / LOCK_NAME
        shutil.copy2(files.lock, draft)
        _compile(repo_root, files, draft, upgrade=False, cache_dir=cache_dir)
        old, new = files.lock.read_text().splitlines(), draft.read_text().splitlines()
    return [f"- {line}" for line in old if line not in new] + [f"+ {line}" for line in new if line not in old]


def _environment(python_version: str) -> dict[str, str]:
    """Marker environment of the Linux x86_64 machines this project runs on (notebook instances, images)."""
    return {
        "python_version": ".".join(python_version.split(".")[:2]),
        "python_full_version": python_version,
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }


def pinned(lock_file: Path, python_version: str) -> dict[str, str]:
    """The lock's pins that apply to this Python on Linux x86_64: normalised name -> version."""
    environment = _environment(python_version)
    pins = {}
    for line in lock_file.read_text().splitlines():
        if not line or line[0] in "# " or "==" not in line:
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            pins[normalise(requirement.name)] = str(requirement.specifier).removeprefix("==")
    return pins


def kernel_pins(repo_root: Path, theme: str, python_version: str) -> dict[str, str]:
    """What the kernel venv must hold: the kernel's and the image's lists resolved under the lock for this Python
    on Linux x86_64 (the lock also pins the training toolkit's dependencies, which only the image installs)."""
    files = Paths(repo_root).theme(theme)
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "kernel.txt"
        command = [
            uv_binary(repo_root),
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--no-annotate",
            "--python-version",
            python_version,
            "--python-platform",
            "x86_64-unknown-linux-gnu",
            str(files.kernel_requirements),
            str(files.image_requirements),
            "-c",
            str(files.lock),
            "--output-file",
            str(output),
        ]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise LockError(f"cannot resolve the kernel of theme {theme}: {result.stderr.strip()[-300:]}")
        return {
            normalise(Requirement(line).name): str(Requirement(line).specifier).removeprefix("==")
            for line in output.read_text().splitlines()
            if line and line[0] not in "# "
        }


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def has_torch(lock_file: Path) -> bool:
    return any(re.match(r"torch==", line) for line in lock_file.read_text().splitlines())


# ---- docker/pins.env: base image per Python (by digest) and the uv inside the image --------------------------
def pins(repo_root: Path) -> dict[str, str]:
    return {k: v or "" for k, v in dotenv_values(repo_root / PINS_FILE).items()}


def base_image_key(py: str) -> str:
    return f"BASE_IMAGE_{py.replace('.', '_')}"


def pinned_base_image(repo_root: Path, py: str) -> str:
    """The digest-pinned base image for Python `py` (e.g. python:3.12-slim@sha256:...), or '' if none is recorded."""
    return pins(repo_root).get(base_image_key(py), "")


def refresh_base_images(repo_root: Path, pythons: list[str]) -> list[str]:
    """Ask the registry for the current digest of python:<py>-slim and record it. Needs Docker Hub."""
    import docker

    client = docker.from_env()
    path = repo_root / PINS_FILE
    text = path.read_text()
    changes = []
    for py in pythons:
        tag = f"python:{py}-slim"
        try:
            digest = client.images.get_registry_data(tag).id
        except docker.errors.APIError as error:
            raise LockError(
                f"cannot read the digest of {tag} from its registry ({error.explanation}); "
                f"the recorded pins are unchanged"
            ) from None
        line = f"{base_image_key(py)}={tag}@{digest}"
        pattern = re.compile(rf"^{base_image_key(py)}=.*$", re.M)
        text = pattern.sub(line, text) if pattern.search(text) else text.rstrip("\n") + f"\n{line}\n"
        changes.append(line)
    path.write_text(text)
    return changes
