"""`inv theme new|check|list|remove` in a scratch copy of the project: a theme from each template is created and
locked, bad names and unresolvable packages leave nothing behind (nor does Ctrl-C during the lock), only themes
made here can be removed, and a theme made from the ds template passes `inv theme check` end to end (kernel,
image, parity, its example as a local-mode job with the kernel's metrics)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import INV, clone_project, run_image, tool_env

pytestmark = pytest.mark.slow  # locks resolved by uv, kernels and images built

TEMPLATES = ("ds", "de", "mlops", "app")
THEMES_IMAGE = run_image("themes")  # IMAGE_NAME of the themes this module builds


@pytest.fixture(scope="module")
def copy(tmp_path_factory) -> Path:
    return clone_project(tmp_path_factory.mktemp("themes") / "project")


def inv(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([INV, *args], cwd=project, env=environment(project, **env), capture_output=True, text=True)


def environment(project: Path, **env: str) -> dict[str, str]:
    return tool_env(WORKING_DIR=str(project.parent / "work"), JUPYTER_DATA_DIR=str(project.parent / "jupyter"), **env)


def stages(project: Path) -> list[Path]:
    """The staging folders of `inv theme.new` (under WORKING_DIR; never in the project)."""
    return sorted((project.parent / "work/stages").glob("theme-new-*"))


def themes_and_staging(project: Path) -> set[str]:
    """Every folder in themes/, any staging folder in the project root (none is made there any more) or under
    WORKING_DIR."""
    found = {p.name for p in (project / "themes").iterdir()} | {p.name for p in project.glob(".gs-theme-new-*")}
    return found | {p.name for p in stages(project)}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Tab", "is not lowercase letters"),
        ("a b", "is not lowercase letters"),
        ("../x", "is not lowercase letters"),
        ("my_theme", "is not lowercase letters"),  # `_` separates theme and Python in the kernel name
        ("x" * 60, "is 60 characters long (at most 32)"),
        ("tabular", "already exists"),
        ("all", "is reserved"),
    ],
)
def test_a_bad_name_is_refused_in_one_line_before_anything_is_written(copy, name, reason):
    before = themes_and_staging(copy)
    result = inv(copy, "theme.new", name)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert reason in line and "Traceback" not in result.stdout + result.stderr
    assert themes_and_staging(copy) == before


def test_a_package_that_does_not_exist_leaves_no_theme(copy):
    before = themes_and_staging(copy)
    result = inv(copy, "theme.new", "ghost", "--add", "gs-ds-env-no-such-package-anywhere")
    assert result.returncode == 1, result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "cannot lock theme ghost" in line and "nothing was written" in line
    # The cause (uv's `Because …` sentence), not the hint uv prints after it.
    assert "Because gs-ds-env-no-such-package-anywhere was not found in the package registry" in line
    assert themes_and_staging(copy) == before


def test_a_theme_to_copy_is_a_name_never_a_path(copy):
    before = themes_and_staging(copy)
    result = inv(copy, "theme.new", "sneaky", "--from", "../themes/tabular")
    assert result.returncode == 2 and "is not a theme's name" in result.stderr, result.stderr
    assert themes_and_staging(copy) == before


def test_a_killed_theme_new_leaves_its_stage_under_working_dir_and_the_next_one_removes_it(copy):
    before = themes_and_staging(copy)
    process = subprocess.Popen(
        [INV, "theme.new", "killed", "--template", "mlops"], cwd=copy, env=environment(copy),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [s for s in stages(copy) if (s / "themes/killed/theme.env").is_file()]:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # no clean-up of its own can run
    process.communicate(timeout=30)
    (stage,) = stages(copy)
    assert not list(copy.glob(".gs-theme-new-*")) and not (copy / "themes/killed").exists()
    nothing = inv(copy, "theme.new", "ghost", "--add", "gs-ds-env-no-such-package-anywhere")
    assert f"[theme] removed {stage}: the stage of an `inv theme.new` that was killed" in nothing.stdout
    assert themes_and_staging(copy) == before


def test_ctrl_c_during_the_lock_leaves_no_theme(copy):
    before = themes_and_staging(copy)
    process = subprocess.Popen(
        [INV, "theme.new", "halfway", "--template", "mlops"], cwd=copy, env=environment(copy),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not [s for s in stages(copy) if (s / "themes/halfway/theme.env").is_file()]:
        time.sleep(0.05)
    assert stages(copy), "the lock step never started"
    time.sleep(0.5)  # uv is resolving now (the mlops lock takes seconds)
    os.killpg(process.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group, uv included
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "interrupted" in err and "Traceback" not in out + err
    assert themes_and_staging(copy) == before


def test_each_template_makes_a_locked_listed_theme_that_remove_takes_away_alone(copy):
    before = themes_and_staging(copy)
    for template in TEMPLATES:
        # One requirement per --add, spaces and markers included (as a line of requirements.txt).
        extra = ["--add", "tomli ; python_version >= '3.11'"] if template == "de" else []
        created = inv(copy, "theme.new", f"mine-{template}", "--template", template, "--python", "3.11", *extra)
        assert created.returncode == 0, created.stdout + created.stderr
        assert f"created themes/mine-{template}/" in created.stdout
        root = copy / "themes" / f"mine-{template}"
        texts = "".join(p.read_text() for p in root.rglob("*") if p.is_file())
        assert "{{" not in texts and "template.env" not in {p.name for p in root.iterdir()}
        assert "DEFAULT_PYTHON=3.11" in (root / "theme.env").read_text()
        assert ("KIND=app" in (root / "theme.env").read_text()) == (template == "app")
        example = {"app": None, "de": "example/process.py"}.get(template, "example/train.py")
        assert sorted(str(p.relative_to(root)) for p in root.glob("example/*.py") if p.stem != "inference") == (
            [example] if example else []
        )
    assert "tomli ; python_version >= '3.11'" in (copy / "themes/mine-de/docker/requirements.txt").read_text()
    assert "tomli==" in (copy / "themes/mine-de/requirements.lock").read_text()
    # A copy of a theme keeps its lists and starts from its lock: the packages both lock pin the same version.
    copied = inv(copy, "theme.new", "mine-tabular", "--from", "tabular", "--description", "Titanic, my way")
    assert copied.returncode == 0, copied.stdout + copied.stderr
    mine = copy / "themes/mine-tabular"
    assert (mine / "kernel/requirements.txt").read_text() == (
        copy / "themes/tabular/kernel/requirements.txt"
    ).read_text()
    pins = {
        line.split(" ")[0]
        for line in (copy / "themes/tabular/requirements.lock").read_text().splitlines()
        if "==" in line
    }
    assert pins == {
        line.split(" ")[0] for line in (mine / "requirements.lock").read_text().splitlines() if "==" in line
    }
    listed = inv(copy, "theme.list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "Titanic, my way [yours]" in rows["mine-tabular"] and rows["mine-app"].split()[1] == "app"
    assert "[yours]" not in rows["tabular"]
    refused = inv(copy, "theme.remove", "tabular")
    assert refused.returncode == 1 and "one of the project's own" in refused.stderr
    # The user's own files in a theme made here (notes, an edited example) are listed and kept; what theme.new
    # wrote goes.
    mine = copy / "themes/mine-ds"
    (mine / "NOTES.md").write_text("my notes\n")
    example = mine / "example/train.py"
    example.write_text(example.read_text() + "# my change\n")
    dry = inv(copy, "theme.remove", "mine-ds", "--dry-run")
    assert dry.returncode == 0 and "would remove: file themes/mine-ds/theme.env" in dry.stdout, dry.stdout
    assert (
        "would keep: 2 file(s) in themes/mine-ds/ that inv theme.new did not write (or that changed since): NOTES.md, example/train.py"
        in dry.stdout
    )
    assert (mine / "theme.env").is_file()
    # A theme folder that is a link is never followed.
    (copy / "themes/linked").symlink_to(copy / "themes/mine-app")
    linked = inv(copy, "theme.remove", "linked")
    assert linked.returncode == 1 and "is a link" in linked.stderr and "Traceback" not in linked.stderr
    (copy / "themes/linked").unlink()
    for name in [f"mine-{t}" for t in TEMPLATES] + ["mine-tabular"]:
        removed = inv(copy, "theme.remove", name)
        assert removed.returncode == 0, removed.stdout + removed.stderr
    assert sorted(str(p.relative_to(mine)) for p in mine.rglob("*") if p.is_file()) == ["NOTES.md", "example/train.py"]
    assert "mine-ds" not in inv(copy, "theme.list").stdout
    import shutil

    shutil.rmtree(mine)
    assert themes_and_staging(copy) == before


def test_a_theme_from_the_ds_template_passes_theme_check_and_remove_spares_the_others(copy, base_image):
    env = {"PY": "3.11", "BASE_IMAGE": base_image, "TORCH_BACKEND": "none", "IMAGE_NAME": THEMES_IMAGE}
    created = inv(copy, "theme.new", "team-ds", **env)
    assert created.returncode == 0, created.stdout + created.stderr
    checked = inv(copy, "theme.check", "team-ds", **env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    steps = [line.split()[1] for line in checked.stdout.splitlines() if line.startswith("[check]")]
    assert steps == ["lock", "kernel", "image", "parity", "example"], checked.stdout
    assert all(" ok" in line for line in checked.stdout.splitlines() if line.startswith("[check]"))
    assert "validation:auc=" in checked.stdout and "as in the kernel" in checked.stdout
    # A second theme (a copy: its image reuses the first one's layers) with its own kernel and image, then the
    # first removed: the second still works.
    other = inv(copy, "theme.new", "team-two", "--from", "team-ds", **env)
    assert other.returncode == 0, other.stdout + other.stderr
    for command in (("kernel", "--theme", "team-two"), ("build", "--theme", "team-two")):
        built = inv(copy, *command, **env)
        assert built.returncode == 0, built.stdout + built.stderr
    # Not while one of its kernels runs: that kernel would break and could not restart.
    kernel = subprocess.Popen(
        [str(copy / "themes/team-ds/kernel/.venv/bin/python"), "-c", "import time; time.sleep(120)"]
    )
    try:
        refused = inv(copy, "theme.remove", "team-ds", **env)
        assert refused.returncode == 1 and f"a kernel of theme team-ds is running (pid {kernel.pid}" in refused.stderr
        assert (copy / "themes/team-ds/kernel/.venv").is_dir()
    finally:
        kernel.kill()
        kernel.wait()
    removed = inv(copy, "theme.remove", "team-ds", **env)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert f"removed image tag {THEMES_IMAGE}:team-ds_311" in removed.stdout
    listed = inv(copy, "theme.list", **env)
    (row,) = [re.split(r"\s{2,}", line) for line in listed.stdout.splitlines() if line.startswith("team-two ")]
    assert row[4:6] == ["team-two_311", "team-two_311"], row  # its kernel and its image are still there
    assert not (copy / "themes/team-ds").exists()
    smoke = subprocess.run(
        [str(copy / "themes/team-two/kernel/.venv/bin/python"), str(copy / "themes/team-two/smoke.py")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert smoke.returncode == 0 and "smoke team-two: ok" in smoke.stdout, smoke.stderr
    image = subprocess.run(
        ["docker", "run", "--rm", f"{THEMES_IMAGE}:team-two_311", "python", "/opt/gs-ds-env/smoke.py"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert image.returncode == 0 and "smoke team-two: ok" in image.stdout, image.stderr
    inv(copy, "theme.remove", "team-two", **env)


@pytest.mark.parametrize("template", ["mlops", "app"])
def test_a_theme_from_each_other_template_passes_theme_check(copy, base_image, template):
    """What the ds test above proves, for every other template: lock, kernel + smoke, image + smoke, parity, and the
    example as a local-mode job with the kernel's metrics (an app theme: its app answers its health check)."""
    env = {"PY": "3.11", "BASE_IMAGE": base_image, "TORCH_BACKEND": "none", "IMAGE_NAME": THEMES_IMAGE}
    name = f"team-{template}"
    created = inv(copy, "theme.new", name, "--template", template, **env)
    assert created.returncode == 0, created.stdout + created.stderr
    try:
        checked = inv(copy, "theme.check", name, **env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        lines = [line for line in checked.stdout.splitlines() if line.startswith("[check]")]
        last = "app" if template == "app" else "example"
        assert [line.split()[1] for line in lines] == ["lock", "kernel", "image", "parity", last], checked.stdout
        assert all(" ok" in line for line in lines), checked.stdout
        if template != "app":
            assert "as in the kernel" in checked.stdout, checked.stdout
    finally:
        removed = inv(copy, "theme.remove", name, **env)
        assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not (copy / "themes" / name).exists()


def test_a_theme_from_the_de_template_checks_and_its_example_processes_raw_events(copy, base_image, tmp_path):
    """The de example is a processing job: theme.check compares its metrics.json in the kernel and as a local
    processing job; then, on raw event files of the user's, its Parquet is read back: every clean event counted once."""
    env = {"PY": "3.11", "BASE_IMAGE": base_image, "TORCH_BACKEND": "none", "IMAGE_NAME": THEMES_IMAGE}
    created = inv(copy, "theme.new", "team-de", "--template", "de", **env)
    assert created.returncode == 0, created.stdout + created.stderr
    assert "inv process --theme team-de --py 3.11 --code themes/team-de/example/process.py" in created.stdout
    try:
        checked = inv(copy, "theme.check", "team-de", **env)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        lines = [line for line in checked.stdout.splitlines() if line.startswith("[check]")]
        assert [line.split()[1] for line in lines] == ["lock", "kernel", "image", "parity", "example"], checked.stdout
        assert "processing job" in lines[-1] and "rows_in=10000" in lines[-1] and "as in the kernel" in lines[-1]
        raw = tmp_path / "events"
        (raw / "late").mkdir(parents=True)
        (raw / "a.csv").write_text(
            "user,ts,amount\nu1,2026-01-01T08:00:00,10.5\nu2,2026-01-01T09:30:00,4\nu1,2026-01-02T10:00:00,0\n"
        )  # the zero amount is dropped
        (raw / "late/b.csv").write_text("user,ts,amount\nu3,2026-01-02T23:59:00,7.25\nu3,2026-01-02T01:00:00,\n")
        job = inv(copy, "process", "--theme", "team-de", "--code", "themes/team-de/example/process.py", "--input",
                  f"raw={raw}", "--output", "daily", "--job-name", "de-daily", **env)  # fmt: skip
        assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
        daily = copy / "runs/de-daily/output/daily"
        read = subprocess.run(
            [str(copy / "themes/team-de/kernel/.venv/bin/python"), "-c",
             "import json, sys, polars as pl; f = pl.read_parquet(sys.argv[1]); "
             "print(json.dumps({'days': [str(d) for d in f['day']], 'events': f['events'].to_list(), "
             "'users': f['users'].to_list(), 'amount': f['amount'].to_list()}))", str(daily / "daily.parquet")],
            capture_output=True, text=True,
        )  # fmt: skip
        assert read.returncode == 0, read.stderr
        assert json.loads(read.stdout) == {
            "days": ["2026-01-01", "2026-01-02"],
            "events": [2, 1],
            "users": [2, 1],
            "amount": [14.5, 7.25],
        }
        metrics = json.loads((daily / "metrics.json").read_text())["metrics"]
        assert metrics == {"rows_in": 5, "rows_out": 2, "amount": 21.75}  # 5 rows in, 3 clean events in 2 days
    finally:
        removed = inv(copy, "theme.remove", "team-de", **env)
        assert removed.returncode == 0, removed.stdout + removed.stderr
