"""`make bench`: measurements side by side in one run, printed with their ratios. No pass/fail here.

1. tabular kernel: from the lock (this project; a new kernel, and a forced rebuild of the same) vs uv on the
   unpinned lists vs `python -m venv` + `pip install -r` (the floor the goal names: >= 10x)
2. extra disk of a second theme venv (uv hardlinks from its cache)
3. image: cold build with uv vs pip (same lock), dependency layer size and start-up import time for each bytecode
   choice (none / imported / all), rebuild after a training/-only change
4. a warm `inv deploy` (TARGET=local) beside a bare `docker run IMAGE train` on the same channels (goal <= 2x),
   medians of runs taken in turn, and the steps the run record accounts for
5. restore: re-registering 5 kernels after the kernelspec directory is wiped (the lifecycle script's job)
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gs_ds_env.kernel import locks  # noqa: E402
from gs_ds_env.paths import PROJECT_PACKAGE, Paths  # noqa: E402
from gs_ds_env.settings import REPO_ROOT, load_settings  # noqa: E402


def _timed(cmd: list[str], **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - started


def _du_bytes(*paths: Path, exclude: str = "") -> int:
    # du counts a hardlinked file once across all its arguments: exactly "extra disk".
    options = [f"--exclude={exclude}"] if exclude else []
    out = subprocess.run(
        ["du", "-s", "-B1", "-c", *options, *map(str, paths)], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip().splitlines()[-1].split()[0])


def copy_project(scratch: Path, *parts: str) -> Path:
    """A scratch copy of the project parts a benchmark needs: it never writes into the checkout."""
    if "themes" in parts:  # the tabular kernel installs this project (theme.env KERNEL_WITH_PROJECT)
        parts = tuple(dict.fromkeys((*parts, *PROJECT_PACKAGE)))
    for part in parts:
        source = REPO_ROOT / part
        if source.is_dir():
            shutil.copytree(
                source, scratch / part, ignore=shutil.ignore_patterns(".venv*", "manifest.env", "__pycache__")
            )
        else:
            shutil.copy2(source, scratch / part)
    return scratch


def bench_kernels(scratch: Path, py: str, env: dict) -> None:
    repo = copy_project(scratch / "repo", "bin", "themes")
    files = Paths(repo).theme("tabular")
    requirements = [files.kernel_requirements, files.image_requirements]
    script = [str(repo / "bin/gs-env-create-kernel.sh")]
    _timed(script + ["tabular", py], env=env)  # warms uv's cache
    # A new kernel from a lock whose packages uv's cache holds (a second theme, a teammate's lock): install, smoke
    # test, registration. The copy has the same lock under another theme name.
    shutil.copytree(
        repo / "themes/tabular", repo / "themes/tabular2", ignore=shutil.ignore_patterns(".venv*", "manifest.env")
    )
    new_seconds = _timed(script + ["tabular2", py], env=env)
    # The same kernel rebuilt (--force, nothing changed): the smoke result recorded for these inputs is reused.
    locked_seconds = _timed(script + ["--force", "tabular", py], env=env)

    uv = locks.uv_binary(REPO_ROOT)
    unpinned = scratch / "unpinned-venv"
    shutil.rmtree(unpinned, ignore_errors=True)
    unpinned_seconds = _timed([uv, "venv", "--quiet", "--seed", "--python", py, str(unpinned)], env=env)
    unpinned_seconds += _timed(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(unpinned / "bin/python"),
            *(arg for path in requirements for arg in ("-r", str(path))),
        ],
        env=env,
    )

    python = shutil.which(f"python{py}", path=env["PATH"]) or sys.executable
    pip_env = {**env, "PIP_CACHE_DIR": str(scratch / "pip-cache")}
    baseline = scratch / "baseline-venv"
    for _ in range(2):  # first run warms pip's cache; the second is measured
        shutil.rmtree(baseline, ignore_errors=True)
        pip_seconds = _timed([python, "-m", "venv", str(baseline)], env=pip_env)
        pip_seconds += _timed(
            [str(baseline / "bin/pip"), "install", "-q", *(arg for path in requirements for arg in ("-r", str(path)))],
            env=pip_env,
        )
    print(f"kernel (tabular, Python {py}, warm caches):")
    print(f"  new kernel from the lock             {new_seconds:7.1f} s   (install + smoke test + registration)")
    print(f"  rebuild from the lock (--force)      {locked_seconds:7.1f} s   (install + registration; smoke recorded)")
    print(f"  from the unpinned lists, uv          {unpinned_seconds:7.1f} s   (install only; versions of the day)")
    print(f"  python -m venv + pip install -r      {pip_seconds:7.1f} s   (install only: the floor)")
    print(f"  speed-up, new kernel vs venv+pip     {pip_seconds / new_seconds:7.1f} x   (goal >= 10x)")
    print(f"  speed-up, rebuild vs venv+pip        {pip_seconds / locked_seconds:7.1f} x   (goal >= 10x)")

    first, second = Paths(repo).theme("tabular").venv, Paths(repo).theme("tabular2").venv
    first_bytes = _du_bytes(first)
    extra = _du_bytes(first, second) - first_bytes
    # The bytecode of what the smoke test imported is the venv's own (Python writes it at a first import anyway).
    installed_extra = _du_bytes(first, second, exclude="__pycache__") - _du_bytes(first, exclude="__pycache__")
    cache_bytes = _du_bytes(Path(env["WORKING_DIR"]) / "cache/uv")
    print("disk:")
    print(
        f"  first venv (apparent)             {first_bytes / 1e6:7.0f} MB   (uv cache {cache_bytes / 1e6:.0f} MB, shared)"
    )
    print(
        f"  second theme venv, extra          {extra / 1e6:7.1f} MB   = {100 * extra / first_bytes:.1f}% of the first "
        f"(its installed files alone: {installed_extra / 1e6:.1f} MB = {100 * installed_extra / first_bytes:.1f}%, "
        "goal < 5%; the rest is the bytecode of what its smoke test imported)"
    )
    bench_restore(repo, py, env)


def bench_restore(repo: Path, py: str, env: dict, kernels: int = 5) -> None:
    """What the on-start lifecycle script does after a stop/start: re-register every kernel whose venv survived.
    Five kernels: tabular, tabular2 and three more copies of it (registration does not depend on what the venv
    holds, and five torch venvs would cost ~30 GB here)."""
    script = [str(repo / "bin/gs-env-create-kernel.sh")]
    for number in range(3, kernels + 1):
        shutil.copytree(
            repo / "themes/tabular",
            repo / f"themes/tabular{number}",
            ignore=shutil.ignore_patterns(".venv*", "manifest.env", ".build.lock"),
        )
        _timed(script + [f"tabular{number}", py], env=env)
    shutil.rmtree(Path(env["JUPYTER_DATA_DIR"]) / "kernels")  # what a notebook stop/start does
    seconds = _timed([str(repo / "bin/gs-env-restore-kernels.sh")], env=env)
    restored = len(list((Path(env["JUPYTER_DATA_DIR"]) / "kernels").iterdir()))
    print("restore after a notebook restart (kernelspecs wiped):")
    print(f"  {restored} kernels re-registered           {seconds:7.1f} s   (goal < 30 s; lifecycle limit 300 s)")


# What the Titanic program imports at start, timed inside the container (interpreter start-up excluded).
IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import titanic.train, titanic.model, matplotlib.pyplot, xgboost; "
    "print(time.perf_counter() - t)"
)


def _cold_build(
    client, repo: Path, tag: str, py: str, base_image: str, nocache: bool = True, **build_args: str
) -> float:
    """Build the tabular image (THEME= overrides) from nothing (nocache) or on the layer cache; seconds."""
    for image in client.images.list(name=tag):
        client.images.remove(image.id, force=True)
    args = {
        "PY": py,
        "THEME": "tabular",
        "BASE_IMAGE": base_image,
        "UV_VERSION": locks.pins(REPO_ROOT)["UV_VERSION"],
        **build_args,
    }
    started = time.perf_counter()
    for _ in client.api.build(
        path=str(repo),
        dockerfile="docker/Dockerfile",
        target="training",
        tag=tag,
        buildargs=args,
        nocache=nocache,
        rm=True,
        forcerm=True,
        decode=True,
    ):
        if "error" in _:
            raise RuntimeError(f"bench build {tag} failed: {_['error']}")
    return time.perf_counter() - started


def _layers(client, tag: str) -> tuple[int, int]:
    """(dependency layer, bytecode layer) bytes: the /opt/venv copy, and what the smoke run compiled."""
    history = client.images.get(tag).history()
    venv = max(layer["Size"] for layer in history if "COPY dir:" in layer["CreatedBy"])
    pyc = sum(layer["Size"] for layer in history if "smoke.py &&" in layer["CreatedBy"])
    return venv, pyc


def _import_seconds(client, tag: str, runs: int = 3) -> float:
    times = [
        float(client.containers.run(tag, ["python", "-c", IMPORT_PROBE], remove=True, working_dir="/opt/program"))
        for _ in range(runs)
    ]
    return sorted(times)[runs // 2]


def bench_image(scratch: Path, py: str, base_image: str) -> None:
    import docker

    repo = copy_project(scratch / "image-repo", "bin", "docker", "training", "themes", ".dockerignore")
    base = base_image or locks.pinned_base_image(REPO_ROOT, py)
    client = docker.from_env()
    name = "gs-ds-env-bench"
    print(f"image (tabular, Python {py}, base {base}; cold builds, no layer cache, same lock):")
    # The anchor: pip as a Dockerfile naively uses it (the same lock, nothing left out).
    pip_seconds = _cold_build(client, repo, f"{name}-pip:cold", py, base, INSTALLER="pip", SLIM="0")
    pip_layer = _layers(client, f"{name}-pip:cold")[0]
    _cold_build(client, repo, f"{name}-unslim:cold", py, base, nocache=False, SLIM="0")
    unslim_layer = _layers(client, f"{name}-unslim:cold")[0]
    rows = {}
    for mode in ("none", "imported", "all"):
        seconds = _cold_build(client, repo, f"{name}-{mode}:cold", py, base, COMPILE_BYTECODE=mode)
        rows[mode] = (
            seconds,
            *_layers(client, f"{name}-{mode}:cold"),
            _import_seconds(client, f"{name}-{mode}:cold"),
            client.images.get(f"{name}-{mode}:cold").attrs["Size"],
        )
    uv_seconds = rows["imported"][0]
    print(f"  cold build, uv                    {uv_seconds:7.1f} s")
    print(f"  cold build, pip                   {pip_seconds:7.1f} s   = {pip_seconds / uv_seconds:.1f}x uv's time")
    print("  bytecode   dependency layer  .pyc layer   image    stack import at start")
    for mode, (_, venv, pyc, imports, size) in rows.items():
        print(
            f"  {mode:<10} {venv / 1e6:9.0f} MB   {pyc / 1e6:7.1f} MB  {size / 1e6:6.0f} MB  {imports:7.2f} s"
            + ("   <- default" if mode == "imported" else "")
        )
    slim_layer = rows["imported"][1]
    print(
        f"  dependency layer: {slim_layer / 1e6:.1f} MB (goal <= 300 MB) = {slim_layer / pip_layer:.2f}x naive pip's"
        f" {pip_layer / 1e6:.1f} MB; uv without docker/slim-venv.py {unslim_layer / 1e6:.1f} MB"
    )

    (repo / "training/titanic/__init__.py").write_text(f'"""bench: a training-only change at {time.time()}"""\n')
    command = [str(repo / "bin/gs-env-docker-build-push.sh"), "--no-push", "--py", py, "--base-image", base]
    args = ["tabular", "-", "-", name, f"tabular_{py.replace('.', '')}"]
    _timed(command + args)  # the script's own build (the layer cache holds the dependencies from above)
    (repo / "training/titanic/__init__.py").write_text(f'"""bench: another training-only change at {time.time()}"""\n')
    rebuild = _timed(command + args)
    print(f"  rebuild after a training/ change  {rebuild:7.1f} s   = {uv_seconds / rebuild:.0f}x faster than cold")
    for mode in ("pip", "unslim", "none", "imported", "all"):
        client.images.remove(f"{name}-{mode}:cold", force=True)


def bench_toolkit(scratch: Path, py: str, base_image: str, themes: list[str]) -> None:
    """What the SageMaker training toolkit adds to each theme image: the same theme built with TOOLKIT=0 and 1."""
    import docker

    repo = copy_project(scratch / "toolkit-repo", "bin", "docker", "training", "themes", ".dockerignore")
    base = base_image or locks.pinned_base_image(REPO_ROOT, py)
    client = docker.from_env()
    print(f"training toolkit per theme image (Python {py}; the same lock, TOOLKIT=0 vs 1):")
    print("  theme         dependency layer          image")
    for theme in themes:
        sizes = {}
        for toolkit in ("0", "1"):
            tag = f"gs-ds-env-bench-toolkit-{theme}:{toolkit}"
            _cold_build(client, repo, tag, py, base, nocache=False, THEME=theme, TOOLKIT=toolkit, TORCH_BACKEND="none")
            sizes[toolkit] = (_layers(client, tag)[0], client.images.get(tag).attrs["Size"])
            client.images.remove(tag, force=True)
        client.images.prune(filters={"dangling": True})  # a torch theme's build stage alone is ~6 GB
        (layer0, image0), (layer1, image1) = sizes["0"], sizes["1"]
        print(
            f"  {theme:<12} {layer0 / 1e6:6.0f} -> {layer1 / 1e6:6.0f} MB (+{(layer1 - layer0) / 1e6:3.0f})"
            f"   {image0 / 1e6:6.0f} -> {image1 / 1e6:6.0f} MB (+{(image1 - image0) / 1e6:3.0f})"
        )


def bench_deploy(scratch: Path, py: str, env: dict, runs: int = 3) -> None:
    """`inv deploy` as a person types it (a new process each time) and the container alone (`docker run IMAGE train`
    on the same staged channels, the floor), taken in turn so that both see the same machine load."""
    repo = copy_project(
        scratch / "deploy-repo", "bin", "docker", "training", "themes", "tasks", ".dockerignore", ".env.example"
    )
    inv = [str(REPO_ROOT / ".venv/bin/inv"), "deploy", "--py", py]
    deploy_env = {**env, "PY": py}

    def deploy() -> tuple[float, dict]:
        started = time.perf_counter()
        subprocess.run(inv, cwd=repo, env=deploy_env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        newest = max((repo / "runs").glob("*/run.json"), key=lambda path: path.stat().st_mtime)
        return seconds, json.loads(newest.read_text())

    _, record = deploy()  # warm-up: kernel, image and staged data exist afterwards
    mounts = [
        arg
        for channel, folder in record["channels"].items()
        for arg in ("-v", f"{folder.removeprefix('file://')}:/opt/ml/input/data/{channel}:ro")
    ]
    container = ["docker", "run", "--rm", *mounts, record["image"]["uri"], "train"]
    deploys, bare = [], []
    for _ in range(runs):
        bare.append(_timed(container))
        deploys.append(deploy())
    deploys.sort(key=lambda pair: pair[0])
    wall, record = deploys[runs // 2]
    floor = sorted(bare)[runs // 2]
    print(f"warm inv deploy (TARGET=local, tabular, Python {py}; medians of {runs}, taken in turn):")
    print(f"  docker run IMAGE train (same channels) {floor:7.1f} s   (the floor)")
    print(f"  inv deploy                             {wall:7.1f} s   = {wall / floor:.1f}x the floor (goal <= 2x)")
    print("  where the median run's time went (its run record):")
    for step, seconds in record["timings"].items():
        indent = "    " if step.startswith("train: ") or step.startswith("training computation") else "  "
        print(f"  {indent}{step:<50}{float(seconds):6.2f} s")
    top = sum(float(v) for k, v in record["timings"].items() if not k.startswith(("train: ", "training computation")))
    print(f"    accounted for {top:.1f} s of {wall:.1f} s; parity's image side: {record['parity']['image_packages']}")


def bench_startup(env: dict, runs: int = 5) -> None:
    """`inv` start-up beside its floor (`python -c 'import invoke, dotenv'`: what no task list can avoid), each
    command taken in turn with the floor so both see the same machine load; medians of `runs`."""
    python, inv = str(REPO_ROOT / ".venv/bin/python"), str(REPO_ROOT / ".venv/bin/inv")
    floor_cmd = [python, "-c", "import invoke, dotenv"]
    commands = {
        "inv --list": [inv, "--list"],
        "inv process --help": [inv, "process", "--help"],
        "inv deploy --dry-run": [inv, "deploy", "--dry-run"],
        "inv process --dry-run": [inv, "process", "--code", "themes/tabular/example/prepare.py", "--dry-run"],
    }
    print(f"inv start-up (medians of {runs}, each taken in turn with the floor; goal <= 2x the floor):")
    for label, command in commands.items():
        floors, times = [], []
        for _ in range(runs):
            floors.append(_timed(floor_cmd, env=env))
            times.append(_timed(command, cwd=REPO_ROOT, env=env))
        floor, median = sorted(floors)[runs // 2], sorted(times)[runs // 2]
        print(f"  {label:<24} {median:6.2f} s   floor {floor:5.2f} s   = {median / floor:.1f}x")


def main() -> None:
    settings = load_settings()
    py = os.environ.get("BENCH_PY", settings.py)
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp:
        scratch = Path(tmp)
        env = {
            **os.environ,
            "WORKING_DIR": str(scratch / "work"),
            "JUPYTER_DATA_DIR": str(scratch / "jupyter"),
            "PATH": os.pathsep.join([str(Path(locks.uv_binary(REPO_ROOT)).parent), os.environ.get("PATH", "")]),
        }
        parts = os.environ.get("BENCH_ONLY", "startup kernels image toolkit deploy").split()  # e.g. BENCH_ONLY=toolkit
        if "startup" in parts:
            bench_startup(env)
        if "kernels" in parts:
            bench_kernels(scratch, py, env)
        if "image" in parts:
            bench_image(scratch, py, settings.base_image)
        if "toolkit" in parts:
            # The torch themes' images are ~6 GB each: BENCH_TOOLKIT_THEMES="tabular forecasting cv tsai" adds them.
            themes = os.environ.get("BENCH_TOOLKIT_THEMES", "tabular forecasting").split()
            bench_toolkit(scratch, py, settings.base_image, themes)
        if "deploy" in parts:
            bench_deploy(scratch, py, env)


if __name__ == "__main__":
    main()
