"""`inv deploy`: kernel -> image -> data -> training job -> report, each step timed."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

from . import data, image, kernels, report, training_job
from .settings import Settings


class Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str):
        print(f"==> {name}", flush=True)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 2)


def reproduce_commands(settings: Settings) -> list[str]:
    lines = [
        "git clone <this repository> && cd gs-ds-env",
        "cp .env.example .env   # then edit; values used by this run:",
        f"# THEME={settings.theme} PY={settings.py} TARGET={settings.target} MODEL={settings.model} SEED={settings.seed}",
    ]
    if settings.base_image:
        lines.append(f"# BASE_IMAGE={settings.base_image}")
    lines.append(f"make deploy THEME={settings.theme} PY={settings.py} TARGET={settings.target}")
    return lines


def deploy_local(settings: Settings, skip_kernel: bool = False, source: str | None = None) -> Path:
    timer = Timer()
    if not skip_kernel:
        with timer.step("kernel"):
            kernels.create_kernel(settings)
    with timer.step("build"):
        built = image.build(settings)
    with timer.step("data"):
        staged = data.split_and_stage(settings, source)
    job_name = training_job.new_job_name(settings)
    with timer.step("train"):
        result = training_job.train_local(settings, built.uri, staged.channels, job_name)
    record = {
        "target": "local",
        "theme": settings.theme,
        "kernel": settings.kernel_name,
        "region": settings.aws_region,
        "image": {"uri": built.uri, "content_tag": built.content_tag, "size_bytes": built.size_bytes},
        "job_name": job_name,
        "channels": result.channels,
        "data": {"source": staged.source, "sha256": staged.sha256, "rows": staged.rows},
        "hyperparameters": result.hyperparameters,
        "metrics": result.metrics,
        "model_artifact": result.model_artifact,
        "output_path": str(Path(result.model_artifact).parent),
        "timings": {**timer.seconds, "training computation (in container)": result.extra.get("training_seconds") or 0.0},
        "reproduce": reproduce_commands(settings),
    }
    run_json, report_md = report.write(settings.runs_dir / job_name, record)
    print(f"report: {report_md}\nrun record: {run_json}", flush=True)
    return run_json


def local_plan(settings: Settings) -> str:
    build_cmd = " ".join(image.build_push_command(settings, push=False))
    return "\n".join([
        f"plan for TARGET=local (theme {settings.theme}, Python {settings.py}):",
        f"  1. bin/gs-env-create-kernel.sh {settings.theme} {settings.py} '' {settings.torch_backend}",
        f"  2. {build_cmd}",
        f"  3. fetch {settings.titanic_csv or settings.titanic_url} (sha256 {settings.titanic_sha256[:12]}…), "
        f"split {1 - settings.validation_fraction:g}/{settings.validation_fraction:g} seed {settings.seed} into data/staged/",
        f"  4. Estimator(instance_type='local', hyperparameters={settings.hyperparameters}).fit(train, validation)",
        "  5. runs/<job>/report.md + run.json",
    ])
