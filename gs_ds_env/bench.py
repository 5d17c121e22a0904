"""`make bench`: measurements side by side in one run, printed with their ratios. No pass/fail here.

1. tabular kernel: this project (uv, warm cache) vs `python -m venv` + `pip install -r` (warm pip cache)
2. extra disk of a second theme venv (uv hardlinks from its cache)
3. image: size, cold build, rebuild after a training/-only change
4. a warm `inv deploy` (TARGET=local) split into steps, beside the training computation itself
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .settings import REPO_ROOT, load_settings


def _timed(cmd: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def _du_bytes(*paths: Path) -> int:
    # du counts a hardlinked file once across all its arguments: exactly "extra disk".
    out = subprocess.run(["du", "-s", "-B1", "-c", *map(str, paths)], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1].split()[0])


def _copy(scratch: Path, *parts: str) -> Path:
    for part in parts:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(source, scratch / part, ignore=shutil.ignore_patterns(".venv*", "manifest.env", "__pycache__"))
        else:
            shutil.copy2(source, scratch / part)
    return scratch


def bench_kernels(scratch: Path, py: str, env: dict) -> None:
    repo = _copy(scratch / "repo", "bin", "themes")
    requirements = repo / "themes/tabular/kernel/requirements.txt"
    script = [str(repo / "bin/gs-env-create-kernel.sh")]
    _timed(script + ["tabular", py], env=env)  # warms uv's cache
    uv_seconds = _timed(script + ["--force", "tabular", py], env=env)

    python = shutil.which(f"python{py}", path=env["PATH"]) or sys.executable
    pip_env = {**env, "PIP_CACHE_DIR": str(scratch / "pip-cache")}
    baseline = scratch / "baseline-venv"
    for _ in range(2):  # first run warms pip's cache; the second is measured
        shutil.rmtree(baseline, ignore_errors=True)
        pip_seconds = _timed([python, "-m", "venv", str(baseline)], env=pip_env)
        pip_seconds += _timed([str(baseline / "bin/pip"), "install", "-q", "-r", str(requirements), "ipykernel"], env=pip_env)
    print(f"kernel (tabular, Python {py}, warm caches):")
    print(f"  gs-env-create-kernel.sh (uv)      {uv_seconds:7.1f} s")
    print(f"  python -m venv + pip install -r   {pip_seconds:7.1f} s")
    print(f"  speed-up                          {pip_seconds / uv_seconds:7.1f} x   (goal >= 10x)")

    shutil.copytree(repo / "themes/tabular", repo / "themes/tabular2", ignore=shutil.ignore_patterns(".venv*", "manifest.env"))
    _timed(script + ["tabular2", py], env=env)
    first = repo / "themes/tabular/kernel/.venv"
    second = repo / "themes/tabular2/kernel/.venv"
    first_bytes = _du_bytes(first)
    extra = _du_bytes(first, second) - first_bytes
    cache_bytes = _du_bytes(Path(env["WORKING_DIR"]) / "cache/uv")
    print("disk:")
    print(f"  first venv (apparent)             {first_bytes / 1e6:7.0f} MB   (uv cache {cache_bytes / 1e6:.0f} MB, shared)")
    print(f"  second theme venv, extra          {extra / 1e6:7.1f} MB   = {100 * extra / first_bytes:.1f}% of the first (goal < 5%)")


def bench_image(scratch: Path, py: str, base_image: str) -> None:
    import docker

    repo = _copy(scratch / "image-repo", "bin", "docker", "training", "themes", ".dockerignore")
    name = "gs-ds-env-bench"
    client = docker.from_env()
    for image in client.images.list(name=name):
        client.images.remove(image.id, force=True)  # a cold build: no cached layers of this repository
    cmd = [str(repo / "bin/gs-env-docker-build-push.sh"), "--no-push", "--py", py]
    cmd += ["--base-image", base_image] if base_image else []
    args = ["tabular", "-", "-", name, f"tabular_{py.replace('.', '')}"]
    cold = _timed(cmd + ["--no-cache"] + args)  # every layer rebuilt: pip downloads and installs everything
    size = client.images.get(f"{name}:tabular_{py.replace('.', '')}").attrs["Size"]
    (repo / "training/titanic/__init__.py").write_text(f'"""bench: a training-only change at {time.time()}"""\n')
    rebuild = _timed(cmd + args)
    print(f"image (tabular, Python {py}, base {base_image or 'python:' + py + '-slim'}):")
    print(f"  size                              {size / 1e6:7.0f} MB")
    print(f"  cold build                        {cold:7.1f} s")
    print(f"  rebuild after a training/ change  {rebuild:7.1f} s   = {cold / rebuild:.0f}x faster than cold")


def bench_deploy(py: str, env: dict) -> None:
    from . import deploy

    settings = load_settings(py=py, target="local")
    os.environ.update({k: v for k, v in env.items() if k in ("WORKING_DIR", "JUPYTER_DATA_DIR", "PATH")})
    deploy.deploy_local(settings)  # warm-up: kernel, image and staged data exist afterwards
    started = time.perf_counter()
    record = json.loads(deploy.deploy_local(settings).read_text())
    total = time.perf_counter() - started
    print("warm inv deploy (TARGET=local):")
    for step, seconds in record["timings"].items():
        print(f"  {step:<34}{float(seconds):7.1f} s")
    print(f"  total                             {total:7.1f} s   (validation AUC {record['metrics']['validation:auc']:.4f})")


def main() -> None:
    settings = load_settings()
    py = os.environ.get("BENCH_PY", settings.py)
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp:
        scratch = Path(tmp)
        env = {**os.environ, "WORKING_DIR": str(scratch / "work"), "JUPYTER_DATA_DIR": str(scratch / "jupyter")}
        bench_kernels(scratch, py, env)
        bench_image(scratch, py, settings.base_image)
        bench_deploy(py, env)


if __name__ == "__main__":
    main()
