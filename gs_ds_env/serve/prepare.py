"""The model as its container will see it, before anything is started or paid for:

1. model.tar.gz unpacked exactly as SageMaker unpacks it into /opt/ml/model: its members as they are (an archive
   inside it stays an archive), nothing outside the folder, no links or devices, progress on a large one;
2. its code: the model's own code/ folder when it has one (the SDK's repack puts it there), else the run's entry
   point (or --entry-point) copied into code/ with its dependencies when it defines a handler function, as
   `estimator.deploy()` / `SKLearnModel(entry_point=...)` repack it, with SAGEMAKER_PROGRAM naming it;
3. `serve --check` in the image: which handler answers (serve.md says it), its peak memory (the endpoint's size),
   whether its CSV input carries a header (batch transform); a model nothing can load is one line here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from gs_serving.handler import defines_handler

from gs_ds_env.serve import ServeError
from gs_ds_env.serve.model_source import ModelSource
from gs_ds_env.settings import Settings

CODE_IN_CONTAINER = "/opt/ml/model/code"  # SAGEMAKER_SUBMIT_DIRECTORY of a repacked model (the SDK's value)
PROGRESS_EVERY_BYTES = 64 * 1024 * 1024  # a model this large is unpacked with a line per this many bytes
FACTS_PREFIX = "serve-facts: "


@dataclass(frozen=True)
class PreparedModel:
    folder: Path  # what /opt/ml/model holds
    environment: dict[str, str]  # SAGEMAKER_PROGRAM and SAGEMAKER_SUBMIT_DIRECTORY when the code was placed
    code_note: str  # where the handler's code came from, for the plan's reader and serve.md
    check_line: str  # `serve --check`'s own line: which handler loaded, peak memory
    facts: dict  # serve --check's facts: handler, kind, model, defaults, csv_header, peak_mb

    @property
    def repacked(self) -> bool:
        """The code was added: the archive SageMaker gets must be this folder, not the original model.tar.gz."""
        return bool(self.environment)

    @property
    def peak_mb(self) -> float:
        return float(self.facts.get("peak_mb", 0.0))

    @property
    def handler(self) -> str:
        return str(self.facts.get("handler", "?"))


def extract(source: ModelSource, settings: Settings, destination: Path) -> Path:
    """The model archive unpacked into `destination` (what /opt/ml/model holds on SageMaker); members that would
    land outside it, links and devices are refused; a truncated or damaged archive is one line."""
    destination.mkdir(parents=True, exist_ok=True)
    archive = source.archive
    if archive.startswith("s3://"):
        from gs_ds_env import aws

        bucket, _, key = archive.removeprefix("s3://").partition("/")
        local = destination.parent / "model.tar.gz"
        print(f"downloading {archive}", flush=True)
        aws.session(settings).client("s3").download_file(bucket, key, str(local))
        archive = str(local)
    total = Path(archive).stat().st_size
    announce = total >= PROGRESS_EVERY_BYTES
    if announce:
        print(f"unpacking {source.archive} ({total / 1e6:.0f} MB compressed)", flush=True)
    try:
        with tarfile.open(archive) as tar:
            done, next_report = 0, PROGRESS_EVERY_BYTES
            for member in tar:
                tar.extract(member, destination, filter="data")
                done += member.size
                if announce and done >= next_report:
                    print(f"  unpacked {done / 1e6:.0f} MB", flush=True)
                    next_report += PROGRESS_EVERY_BYTES
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        shutil.rmtree(destination, ignore_errors=True)
        why = str(error) or type(error).__name__
        if isinstance(error, EOFError):
            why = "it ends early (truncated: copied or downloaded only in part)"
        raise ServeError(f"cannot unpack {source.archive}: {why}; serve a whole model.tar.gz") from None
    return destination


def place_code(source: ModelSource, folder: Path) -> tuple[dict[str, str], str]:
    """The handler's code in `folder`/code, and the environment that names it; (environment, where it came from)."""
    own = folder / "code"
    if own.is_dir():
        unused = f"; {source.code.origin} is not used" if source.code else ""
        return {}, f"the model's own code/ folder{unused}"
    code = source.code
    if code is None:
        return {}, "none (the model holds no code/ and no script was given)"
    entry = code.root / code.entry_point
    if not entry.is_file():
        raise ServeError(f"{code.origin}: {entry} is not there any more: give the script with --entry-point")
    if not defines_handler(entry):
        return {}, f"{code.origin} defines no handler function (model_fn, input_fn, ...): the defaults answer"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(code.root, own, ignore=ignore)
    for dependency in code.dependencies:
        if dependency.is_dir():
            shutil.copytree(dependency, own / dependency.name, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(dependency, own / dependency.name)
    environment = {"SAGEMAKER_PROGRAM": code.entry_point, "SAGEMAKER_SUBMIT_DIRECTORY": CODE_IN_CONTAINER}
    return environment, f"{code.origin}, in the model's code/ (as the SDK repacks it)"


def check(image_ref: str, folder: Path, environment: dict[str, str]) -> tuple[str, dict]:
    """`serve --check` in the image: the model and its handler load, or one line says why."""
    options = [part for key, value in environment.items() for part in ("-e", f"{key}={value}")]
    result = subprocess.run(
        ["docker", "run", "--rm", "-v", f"{folder}:/opt/ml/model:ro", *options, image_ref, "serve", "--check"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()] or ["no output"]
        reason = next((line for line in reversed(lines) if line.startswith("serve:")), lines[-1])
        raise ServeError(f"the model cannot be served by {image_ref}: {reason.removeprefix('serve: ')}")
    lines = result.stdout.splitlines()
    facts_line = next((line for line in lines if line.startswith(FACTS_PREFIX)), "")
    try:
        facts = json.loads(facts_line.removeprefix(FACTS_PREFIX)) if facts_line else {}
    except ValueError:
        facts = {}
    if not facts:
        raise ServeError(f"`serve --check` in {image_ref} did not report what it loaded: rebuild the image (inv build)")
    line = next((line for line in lines if not line.startswith(FACTS_PREFIX)), "").strip()
    return line, facts


def prepare(settings: Settings, source: ModelSource, image_ref: str, scratch: Path) -> PreparedModel:
    folder = extract(source, settings, scratch / "model")
    environment, note = place_code(source, folder)
    line, facts = check(image_ref, folder, environment)
    print(f"{line}\n  code: {note}", flush=True)
    return PreparedModel(folder, environment, note, line, facts)


def archive(prepared: PreparedModel, destination: Path) -> Path:
    """The folder as a model.tar.gz (the SDK's repack: the model's files and code/ at its root)."""
    with tarfile.open(destination, "w:gz") as tar:
        for path in sorted(prepared.folder.iterdir()):
            tar.add(path, arcname=path.name)
    return destination
