"""`inv theme.check`: one verdict on a theme, one line per step, stopping at the first failure with its fix:
the lock matches its lists, the kernel builds from it and passes the smoke test, the image builds and passes it,
the kernel and the image hold the same versions, and the example runs as a local-mode job with the metrics it
has in the kernel, or as a local-mode processing job (`example/process.py`) with the same metrics.json (an app
theme: its app answers). What the steps print goes to a log, named on failure."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from gs_ds_env import image
from gs_ds_env.job.training_job import TrainingFailed
from gs_ds_env.kernel import kernels, locks, parity
from gs_ds_env.settings import Settings
from gs_ds_env.theme import ThemeError

RELATIVE_TOLERANCE = 1e-6  # the same seeded computation on the same versions; only float printing may differ


@contextlib.contextmanager
def _into(log: Path):
    """Send this process's and its children's output to `log` (at the descriptor level, so subprocesses too)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with log.open("ab") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _kernel_metrics(settings: Settings, script: Path, folder_option: str = "--model-dir") -> dict[str, float]:
    """The example run in the kernel, its metrics.json written into a scratch `folder_option` (--model-dir for a
    training example, --output-dir for a processing one)."""
    with tempfile.TemporaryDirectory(dir=settings.working_dir) as model_dir:
        result = subprocess.run(
            [str(settings.theme_files.venv / "bin/python"), str(script), folder_option, model_dir,
             "--seed", str(settings.seed)],
            cwd=settings.repo_root, capture_output=True, text=True,
        )  # fmt: skip
        print(result.stdout + result.stderr, flush=True)
        if result.returncode:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ThemeError(f"the example fails in the kernel: {last}")
        written = Path(model_dir) / "metrics.json"
        if not written.is_file():
            raise ThemeError(f"the example wrote no metrics.json into {folder_option}: {script} must, to be compared")
        return json.loads(written.read_text())["metrics"]


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _same(kernel: dict[str, float], job: dict[str, float]) -> list[str]:
    return [
        f"{name}: kernel {value}, job {job.get(name)}"
        for name, value in kernel.items()
        if name not in job or not math.isclose(float(value), float(job[name]), rel_tol=RELATIVE_TOLERANCE)
    ]


class _Step:
    """One step of a check: its line and time; at a failure, one ThemeError with the fix and the log."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, label: str, action, fix: str) -> object:
        print(f"[check] {label:<8}", end=" ", flush=True)
        started = time.monotonic()
        try:
            with _into(self.log):
                outcome = action()
        except (ThemeError, locks.LockError, kernels.KernelError, parity.ParityError) as error:
            print("FAILED", flush=True)
            raise ThemeError(f"{label}: {error}; fix: {fix} (log: {self.log})") from None
        except subprocess.CalledProcessError as error:
            print("FAILED", flush=True)
            raise ThemeError(f"{label}: {Path(error.cmd[0]).name} failed; fix: {fix} (log: {self.log})") from None
        except TrainingFailed as error:
            print("FAILED", flush=True)
            raise ThemeError(f"{label}: {error}; fix: {fix}") from None
        except BaseException:
            print("FAILED", flush=True)
            raise
        detail = outcome if isinstance(outcome, str) else getattr(outcome, "uri", "")
        print(f"ok{f' ({detail})' if detail else ''} [{time.monotonic() - started:.0f} s]", flush=True)
        return outcome


def check(settings: Settings) -> Path:
    """Run every step; returns the log. Raises ThemeError (one line, with the fix) at the first failure."""
    name, files = settings.theme, settings.theme_files
    settings.working_dir.mkdir(parents=True, exist_ok=True)
    folder = settings.runs_dir / "theme-checks"
    folder.mkdir(parents=True, exist_ok=True)
    step = _Step(folder / f"{name}-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}.log")

    def lock() -> str:
        stale = locks.stale(settings.repo_root, name, settings.paths.uv_cache)
        if stale:
            raise ThemeError(f"the lock differs from the lists in {len(stale)} lines")
        return str(files.lock.relative_to(settings.repo_root))

    step("lock", lock, f"inv lock --theme {name}")
    step("kernel", lambda: kernels.create_kernel(settings) or settings.kernel_name,
         f"correct themes/{name}/kernel/requirements.txt or smoke.py, then check again")  # fmt: skip
    built = step("image", lambda: image.build(settings),
                 f"correct themes/{name}/docker/requirements.txt or smoke.py, then check again")  # fmt: skip

    def same_versions() -> str:
        result = parity.check(settings.kernel_name, files.venv, built.local_ref)
        if not result.ok:
            raise ThemeError(result.summary())
        return f"{len(result.rows)} shared packages, one version each"

    step("parity", same_versions, f"inv lock --theme {name}, then rebuild: inv kernel --force, inv build")
    _check_what_it_runs(settings, step)
    return step.log


def _check_what_it_runs(settings: Settings, step: _Step) -> None:
    """An app theme's app answers its health check; a training theme's example gives in a job what it gives in
    the kernel (train.py: a training job; process.py alone: a processing job)."""
    from gs_ds_env.job import deploy

    name, files = settings.theme, settings.theme_files
    if files.kind == "app":
        from gs_ds_env.image.app import run as run_app

        step("app", lambda: run_app(settings, _free_port(), check_only=True) or "answers its health check",
             f"correct themes/{name}/app.py")  # fmt: skip
        return
    script = files.root / "example/train.py"
    processing = files.root / "example/process.py"
    if processing.is_file() and not script.is_file():
        step("example", lambda: _processing_example(settings, processing),
             f"correct themes/{name}/example/process.py (run it in the kernel first)")  # fmt: skip
        return
    if not script.is_file():
        print(f"[check] example  none (themes/{name}/example/train.py): nothing to train", flush=True)
        return

    def example() -> str:
        in_kernel = _kernel_metrics(settings, script)
        record = json.loads(
            deploy.run_script(settings.replace(entry_point=str(script)), channels={},
                              hyperparameters={}).read_text()
        )  # fmt: skip
        return _as_in_kernel(in_kernel, record.get("metrics", {}), f"job {record['job_name']}")

    step("example", example, f"correct themes/{name}/example/train.py (run it in the kernel first)")


def _processing_example(settings: Settings, script: Path) -> str:
    """A processing example: its metrics.json from --output-dir in the kernel, and from the output `example` of a
    local-mode processing job given the same arguments (the output's folder as --output-dir)."""
    from gs_ds_env.job import deploy, processing

    in_kernel = _kernel_metrics(settings, script, "--output-dir")
    output = processing.DataOutput("example")
    run_json = deploy.run_process(
        settings.replace(entry_point=str(script)), inputs=[], outputs=[output],
        arguments=["--output-dir", output.container_path, "--seed", str(settings.seed)],
    )  # fmt: skip
    record = json.loads(run_json.read_text())
    written = Path(record["outputs"][output.name]["path"]) / "metrics.json"
    if not written.is_file():
        raise ThemeError(
            f"the processing job wrote no metrics.json into its --output-dir: {script} must, to be compared"
        )
    return _as_in_kernel(in_kernel, json.loads(written.read_text())["metrics"], f"processing job {record['job_name']}")


def _as_in_kernel(in_kernel: dict[str, float], job: dict[str, float], label: str) -> str:
    """The job's metrics are the kernel's (ThemeError naming each that differs); the step's line when they are."""
    differ = _same(in_kernel, job)
    if differ:
        raise ThemeError(f"the job's metrics differ from the kernel's: {'; '.join(differ)}")
    shown = ", ".join(f"{k}={v}" for k, v in list(in_kernel.items())[:2])
    return f"{label}: {shown}, as in the kernel"
