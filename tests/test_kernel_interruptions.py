"""Fault injection on a kernel rebuild: SIGINT, SIGTERM and SIGKILL at named steps (GS_KERNEL_PAUSE_AT), and two
rebuilds at once. After each, a working kernel exists (the old or the new one) and the next run cleans up.

One scratch copy of the project, one WORKING_DIR and JUPYTER_DATA_DIR for the module: the first build fills uv's
cache, so each rebuild after it takes seconds. The faults are injected into a small theme made for them (ipykernel
and its smoke test: the script's steps and rollback are the same for every theme, a rebuild takes seconds instead
of a minute); the test under load keeps the tabular theme, whose large venv makes the race it guards visible.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import INV, clone_project, tool_env

pytestmark = pytest.mark.slow  # real kernel rebuilds (uv), interrupted at each step

SCRIPT = "bin/gs-env-create-kernel.sh"
LEFTOVERS = (".venv.new", ".venv.previous", ".requirements.lock.txt.new", "manifest.env.new", ".kernelspec.previous")


THEME, PY = "faults", "3.12"
KERNEL = f"{THEME}_{PY.replace('.', '')}"


def small_theme(repo: Path, env: dict) -> None:
    """themes/faults: ipykernel and a smoke test, locked like any theme."""
    theme = repo / "themes" / THEME
    (theme / "kernel").mkdir(parents=True)
    (theme / "docker").mkdir()
    (theme / "kernel/requirements.txt").write_text("ipykernel\n")
    (theme / "docker/requirements.txt").write_text("")
    (theme / "theme.env").write_text(
        f"# ipykernel only: the kernel script's fault injection\nDEFAULT_PYTHON={PY}\nKIND=app\n"
    )
    (theme / "smoke.py").write_text("import ipykernel\n\nprint('smoke ok: ipykernel', ipykernel.__version__)\n")
    locked = subprocess.run([INV, "lock", "--theme", THEME], cwd=repo, env=env, capture_output=True, text=True)
    assert locked.returncode == 0, locked.stderr[-2000:]


def first_build(tmp_path_factory, theme: str):
    root = tmp_path_factory.mktemp(f"interrupt-{theme}")
    repo = clone_project(root / "repo")
    (root / "tmp").mkdir()
    env = tool_env(WORKING_DIR=str(root / "work"), JUPYTER_DATA_DIR=str(root / "jupyter"), TMPDIR=str(root / "tmp"))
    if theme == THEME:
        small_theme(repo, env)
    first = subprocess.run([str(repo / SCRIPT), theme, PY, "", "none"], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert list((root / "tmp").iterdir()) == [], "kernel registration must leave no temporary folders"
    return repo, env, root / "jupyter"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return first_build(tmp_path_factory, THEME)


@pytest.fixture(scope="module")
def built_tabular(tmp_path_factory):
    return first_build(tmp_path_factory, "tabular")


def assert_working_kernel(repo: Path, jupyter: Path, theme: str = THEME, probe: str = "ipykernel") -> None:
    venv = repo / f"themes/{theme}/kernel/.venv"
    spec = json.loads((jupyter / f"kernels/{theme}_{PY.replace('.', '')}/kernel.json").read_text())
    assert spec["argv"][0] == str(venv / "bin/python")
    started = subprocess.run(
        [spec["argv"][0], "-c", f"import {probe}, sys; print(sys.prefix)"], capture_output=True, text=True
    )
    assert started.returncode == 0 and started.stdout.strip() == str(venv), started.stderr


def as_from_a_terminal() -> None:
    """Ctrl-C as a person's shell delivers it: a test run started in the background (`pytest &`) passes SIGINT on
    ignored, and bash cannot trap a signal ignored at entry."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def leftovers(repo: Path, theme: str = THEME) -> list[str]:
    kernel_dir = repo / f"themes/{theme}/kernel"
    discarded = [path.name for path in kernel_dir.glob(".venv.discarded*")]
    return [name for name in LEFTOVERS if (kernel_dir / name).exists()] + discarded


def interrupted_rebuild(repo: Path, env: dict, step: str, sig: signal.Signals) -> int:
    """Start `--force`, wait until it pauses at `step`, signal its whole process group (as Ctrl-C or a
    shutdown would), return its exit status."""
    process = subprocess.Popen(
        [str(repo / SCRIPT), "--force", THEME, PY, "", "none"],
        env={**env, "GS_KERNEL_PAUSE_AT": step},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    seen = []
    for line in process.stderr:
        seen.append(line)
        if f"paused at {step}" in line:
            break
    else:
        process.wait()
        pytest.fail(f"the rebuild never reached {step}: {''.join(seen)[-2000:]}")
    os.killpg(process.pid, sig)
    process.stderr.read()
    return process.wait(timeout=120)


@pytest.mark.parametrize(
    "step, sig",
    [
        ("installed", signal.SIGTERM),
        ("moved-aside", signal.SIGTERM),  # the old venv exists only as .venv.previous at this moment
        ("moved-aside", signal.SIGINT),
        ("swapped", signal.SIGINT),
        ("committed", signal.SIGTERM),
    ],
)
def test_a_caught_signal_leaves_a_working_kernel_and_nothing_half_done(built, step, sig):
    repo, env, jupyter = built
    assert interrupted_rebuild(repo, env, step, sig) != 0
    assert_working_kernel(repo, jupyter)
    assert leftovers(repo) == []
    again = subprocess.run([str(repo / SCRIPT), THEME, PY, "", "none"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_working_kernel(repo, jupyter)


@pytest.mark.parametrize("step", ["installed", "moved-aside", "swapped", "committed"])
def test_after_sigkill_the_next_run_recovers_or_finishes(built, step):
    repo, env, jupyter = built
    assert interrupted_rebuild(repo, env, step, signal.SIGKILL) == -signal.SIGKILL
    # Nothing could run on SIGKILL: the next run (a plain one, as `make kernel` or the restore on start) repairs.
    restore = subprocess.run([str(repo / "bin/gs-env-restore-kernels.sh")], env=env, capture_output=True, text=True)
    assert restore.returncode == 0, restore.stderr[-2000:]
    assert_working_kernel(repo, jupyter)
    assert leftovers(repo) == []
    again = subprocess.run([str(repo / SCRIPT), THEME, PY, "", "none"], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_working_kernel(repo, jupyter)
    # The rebuild was of the same inputs: whichever venv the recovery kept (the old one put back, or the new one
    # whose swap it finished), its manifest matches them, so there is nothing left to build.
    assert "is up to date and healthy" in again.stderr and "ready:" not in again.stderr, again.stderr[-2000:]


def test_two_rebuilds_at_once_take_turns(built):
    repo, env, jupyter = built
    first = subprocess.Popen(
        [str(repo / SCRIPT), "--force", THEME, PY, "", "none"],
        env={**env, "GS_KERNEL_PAUSE_AT": "installed", "GS_KERNEL_PAUSE_SECONDS": "5"},
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in first.stderr:
        if "paused at installed" in line:
            break
    second = subprocess.run(
        [str(repo / SCRIPT), "--force", THEME, PY, "", "none"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    first_err = first.stderr.read()
    assert first.wait() == 0, first_err[-2000:]
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"another build of {THEME} is running (pid {first.pid}); waiting for it" in second.stderr
    assert_working_kernel(repo, jupyter)
    assert leftovers(repo) == []


def test_ctrl_c_through_inv_lets_the_script_roll_back(built):
    # subprocess.run would kill the script 0.25 s after Ctrl-C, in the middle of its rollback.
    repo, env, jupyter = built
    process = subprocess.Popen(
        [INV, "kernel", "--theme", THEME, "--py", PY, "--torch", "none", "--force"],
        cwd=repo,
        env={**env, "GS_KERNEL_PAUSE_AT": "moved-aside"},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=as_from_a_terminal,
    )
    for line in process.stderr:
        if "paused at moved-aside" in line:
            break
    os.killpg(process.pid, signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=120) == 130, rest
    assert f"kernel {KERNEL} was NOT changed" in rest
    assert rest.strip().splitlines()[-1].startswith("error: interrupted (Ctrl-C)")
    assert_working_kernel(repo, jupyter)
    assert leftovers(repo) == []


def test_a_kernel_started_the_moment_inv_returns_works_under_load(built_tabular):
    """After the swap the rollback must put the previous venv back before deleting the new one, and inv must wait
    for it on SIGTERM and SIGHUP as on Ctrl-C (one code path: interrupts.Interrupted; SIGHUP sent to inv alone is
    the harder case, inv must pass it on): with the CPU busy, a kernel started the instant inv returns finds a
    complete venv. (A SIGTERM to the whole group at each step is test_a_caught_signal_….)"""
    sig, whole_group = signal.SIGHUP, False
    repo, env, jupyter = built_tabular
    load = [subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(2)]
    try:
        process = subprocess.Popen(
            [INV, "kernel", "--theme", "tabular", "--py", "3.12", "--torch", "none", "--force"],
            cwd=repo,
            env={**env, "GS_KERNEL_PAUSE_AT": "swapped"},
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for line in process.stderr:
            if "paused at swapped" in line:
                break
        if whole_group:
            os.killpg(process.pid, sig)
        else:
            process.send_signal(sig)
        rest = process.stderr.read()
        code = process.wait(timeout=120)
        spec = json.loads((jupyter / "kernels/tabular_312/kernel.json").read_text())
        started = subprocess.run(
            [spec["argv"][0], "-c", "import ipykernel, xgboost, sys; print(sys.prefix)"], capture_output=True, text=True
        )
    finally:
        for busy in load:
            busy.kill()
    assert code == 128 + sig, rest
    assert started.returncode == 0, started.stderr[-2000:]
    assert "kernel tabular_312 was NOT changed" in rest
    assert rest.strip().splitlines()[-1].startswith(f"error: interrupted ({signal.Signals(sig).name})")
    assert_working_kernel(repo, jupyter, "tabular", "ipykernel, xgboost")
    assert leftovers(repo, "tabular") == []


def test_a_rebuild_of_the_same_inputs_reuses_the_recorded_smoke_result_and_a_changed_input_runs_it(built, tmp_path):
    """The smoke test runs once per inputs + Python + torch backend: a changed input runs it; a forced rebuild of the
    same carries its result over (with the time it ran) and says so."""
    repo, env, jupyter = built
    smoke = repo / f"themes/{THEME}/smoke.py"
    manifest = repo / f"themes/{THEME}/kernel/manifest.env"
    ran = tmp_path / "smoke-ran"
    marked_env = {**env, "GS_TEST_SMOKE_MARK": str(ran)}
    smoke.write_text(
        "import os\n\nimport ipykernel\n\n"
        "if os.environ.get('GS_TEST_SMOKE_MARK'):\n"
        "    with open(os.environ['GS_TEST_SMOKE_MARK'], 'a') as mark:\n"
        "        mark.write('ran\\n')\n"
        "print('smoke ok: ipykernel', ipykernel.__version__)\n"
    )

    def rebuild(*flags: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(repo / SCRIPT), *flags, THEME, PY, "", "none"], env=marked_env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    def recorded() -> dict:
        return dict(line.split("=", 1) for line in manifest.read_text().splitlines() if "=" in line and line[0] != "#")

    rebuild()  # smoke.py changed (an input): the smoke test runs although a result is recorded for the old inputs
    first = recorded()
    assert ran.read_text() == "ran\n" and first["SMOKE"].startswith('"smoke ok: ipykernel')
    forced = rebuild("--force")
    assert ran.read_text() == "ran\n", "a rebuild of the same inputs ran the smoke test again"
    assert "not run again" in forced.stderr
    again = recorded()
    assert again["SMOKE"] == first["SMOKE"] and again["SMOKE_AT"] == first["SMOKE_AT"] != '""'
    assert again["CREATED_AT"] >= first["CREATED_AT"]
    assert_working_kernel(repo, jupyter)
