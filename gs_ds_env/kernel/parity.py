"""Parity: every package present in both the theme's kernel venv and its image, with both versions.

The notebook is where code is written, the image is where it runs: a package at another version in one of them
(say `%pip install pandas==2.2.0` in the notebook) means the job does not run what was tried. Both sides are asked
the same question, by the same probe, through their own interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import InvalidVersion, Version

from gs_ds_env.errors import GsError
from gs_ds_env.kernel.locks import normalise

PROBE = (
    "import importlib.metadata as m, json, platform; "
    "print(json.dumps({'python': platform.python_version(), "
    "'packages': {d.metadata['Name']: d.version for d in m.distributions() if d.metadata['Name']}}))"
)
# uv/pip seed packages of a venv, not part of any theme.
SEED = {"pip", "setuptools", "wheel"}


class ParityError(GsError):
    """The kernel and the image cannot be compared, or differ; the message is one line."""


@dataclass(frozen=True)
class Environment:
    python: str
    packages: dict[str, str]  # normalised name -> version
    origin: str = "listed now"  # or where a list made earlier for the same image id was read from


@dataclass(frozen=True)
class Row:
    name: str
    kernel: str
    image: str

    @property
    def same(self) -> bool:
        """Same release. A different local label (torch 2.15.0+cu126 vs +cpu) is the same code for another device."""
        try:
            return Version(self.kernel).public == Version(self.image).public
        except InvalidVersion:
            return self.kernel == self.image

    @property
    def note(self) -> str:
        if not self.same:
            return "DIFFERENT"
        return "same release, other build" if self.kernel != self.image else ""


@dataclass(frozen=True)
class Parity:
    kernel_name: str
    image: str
    kernel: Environment
    container: Environment
    rows: list[Row] = field(default_factory=list)

    @property
    def differences(self) -> list[Row]:
        return [row for row in self.rows if not row.same]

    @property
    def python_differs(self) -> bool:
        return self.kernel.python.split(".")[:2] != self.container.python.split(".")[:2]

    def summary(self) -> str:
        """One line: 0 differences, or the packages that differ."""
        if self.python_differs:
            return (
                f"kernel {self.kernel_name} runs Python {self.kernel.python} but image {self.image} runs "
                f"{self.container.python}: rebuild one of them for the same PY"
            )
        if not self.differences:
            return f"kernel {self.kernel_name} and image {self.image}: {len(self.rows)} shared packages, 0 differences"
        listed = ", ".join(f"{row.name} {row.kernel} (kernel) != {row.image} (image)" for row in self.differences)
        return (
            f"kernel {self.kernel_name} and image {self.image} differ in {len(self.differences)} package(s): {listed}"
        )

    def table(self) -> str:
        header = ("package", "kernel", "image", "")
        lines = [header] + [(r.name, r.kernel, r.image, r.note) for r in self.rows]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        body = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
        return "\n".join(body + [f"Python: kernel {self.kernel.python}, image {self.container.python}", self.summary()])

    def as_record(self, allowed_drift: bool) -> dict:
        return {
            "checked": True,
            "shared_packages": len(self.rows),
            "python_differs": self.python_differs,
            "differences": [{"name": r.name, "kernel": r.kernel, "image": r.image} for r in self.differences],
            "allowed_drift": allowed_drift,
        }

    @property
    def ok(self) -> bool:
        return not self.differences and not self.python_differs


def _parse(output: str) -> Environment:
    data = json.loads(output.strip().splitlines()[-1])
    return Environment(data["python"], {normalise(k): v for k, v in data["packages"].items()})


def venv_environment(venv: Path) -> Environment:
    python = venv / "bin/python"
    if not python.exists():
        raise ParityError(f"no kernel venv at {venv}: create it first (make kernel THEME=... PY=...)")
    result = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True)
    if result.returncode != 0:
        raise ParityError(
            f"the kernel venv {venv} does not start ({result.stderr.strip()[-200:]}): rebuild it with "
            f"make kernel FORCE=1"
        )
    return _parse(result.stdout)


def image_environment(image: str) -> Environment:
    """The image's packages, from a container the daemon removes itself (`--rm`): an interrupted probe leaves
    none behind, which the SDK's client-side removal cannot promise."""
    probe = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "", image, "python", "-c", PROBE], capture_output=True, text=True
    )
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        raise ParityError(f"cannot list the packages of image {image}: {reason}")
    return _parse(probe.stdout)


def image_environment_once(image: str, cache: Path) -> Environment:
    """The image's packages, listed in a container the first time and read back from `cache` (named by the image
    id, i.e. by its content) afterwards: a warm run does not start a container to learn what cannot have changed.
    A damaged cache file is listed again."""
    try:
        saved = json.loads(cache.read_text())
        return Environment(
            saved["python"], saved["packages"], origin=f"reused: listed at {saved['listed_at']} ({cache})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    listed = image_environment(image)
    cache.parent.mkdir(parents=True, exist_ok=True)
    scratch = cache.with_name(f".{cache.name}.{os.getpid()}")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    scratch.write_text(json.dumps({"python": listed.python, "packages": listed.packages, "listed_at": stamp}))
    scratch.replace(cache)
    return listed


def compare(kernel_name: str, image: str, kernel: Environment, container: Environment) -> Parity:
    shared = sorted((set(kernel.packages) & set(container.packages)) - SEED)
    rows = [Row(name, kernel.packages[name], container.packages[name]) for name in shared]
    return Parity(kernel_name, image, kernel, container, rows)


def check(kernel_name: str, venv: Path, image: str) -> Parity:
    return compare(kernel_name, image, venv_environment(venv), image_environment(image))


def before_run(settings, built, allow_drift: bool) -> tuple[dict, Environment]:
    """Kernel venv vs a run's image (an image.BuiltImage), before any job: a difference stops the run unless
    `allow_drift`. The run record's parity, and the image's environment (its versions)."""
    venv = settings.theme_files.venv
    container = (
        image_environment_once(built.local_ref, settings.paths.image_packages(built.image_id))
        if built.image_id
        else image_environment(built.local_ref)
    )
    if not venv.is_dir():
        print(f"note: no kernel venv for {settings.theme} ({venv}): parity with the notebook not checked", flush=True)
        return {"checked": False, "reason": f"no kernel venv at {venv}", "image_packages": container.origin}, container
    result = compare(settings.kernel_name, built.local_ref, venv_environment(venv), container)
    if result.ok:
        print(f"parity: {result.summary()}", flush=True)
    elif allow_drift:
        print(f"warning: {result.summary()} (--allow-drift: running anyway; the report records it)", flush=True)
    else:
        raise ParityError(
            f"{result.summary()}. The job would not run what the notebook ran: rebuild the "
            f"kernel (make kernel THEME={settings.theme} PY={settings.py} FORCE=1) or pass "
            f"--allow-drift"
        )
    return {**result.as_record(allow_drift), "image_packages": container.origin}, container
