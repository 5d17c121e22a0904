"""The task surface stays one thing: invoke namespaces (kernel.create, image.build, ...) with the old flat names
as aliases of the same tasks, a Makefile that only wraps entry points, and a README whose `make` and `inv`
commands all exist with the options they use."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import subprocess
import sys

import pytest
from conftest import INV, REPO, clone_project, one_line_refusal, run_inv, tool_env
from invoke import Program

ENTRY_POINTS = {"help", "venv", "kernel", "deploy", "doctor", "test", "test-fast", "lint", "format", "bench"}


def load_namespace():
    """The checkout's tasks package (one module per namespace), loaded under its own name."""
    spec = importlib.util.spec_from_file_location(
        "project_tasks", REPO / "tasks/__init__.py", submodule_search_locations=[str(REPO / "tasks")]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["project_tasks"] = module  # its relative imports (from . import kernel) resolve through it
    spec.loader.exec_module(module)
    return module


def inv_output(project, *args: str) -> str:
    result = subprocess.run([INV, *args], cwd=project, capture_output=True, text=True, env=tool_env())
    assert result.returncode == 0, result.stderr
    return result.stdout


def task_options(ns, name: str) -> set[str]:
    task = ns[name]
    return {dashed for argument in task.get_arguments() for dashed in argument.names}


def makefile_targets() -> dict[str, list[str]]:
    """target -> its recipe lines."""
    targets, current = {}, None
    for line in (REPO / "Makefile").read_text().splitlines():
        match = re.match(r"^([a-z][a-z-]*):", line)
        if match:
            current = match.group(1)
            targets[current] = []
        elif line.startswith("\t") and current:
            targets[current].append(line.strip())
        elif not line.strip():
            current = None
    return targets


def readme_code() -> str:
    text = (REPO / "README.md").read_text()
    return "\n".join(re.findall(r"```[a-z]*\n(.*?)```", text, re.S) + re.findall(r"`([^`\n]+)`", text))


def test_inv_lists_each_namespace_and_each_flat_name_answers_as_its_namespaced_task(tmp_path):
    """What a user sees: `inv --list` shows every namespace's tasks and the flat names; `inv --help <flat>` is the
    help of a namespaced task (same docstring, same options), so the README's short commands are those tasks."""
    listed = {
        line.split()[0]
        for line in inv_output(clone_project(tmp_path / "project"), "--list").splitlines()[2:]
        if line.strip()
    }
    tasks = load_namespace()
    namespaced = {f"{group.name}.{name}" for group in tasks.NAMESPACES for name in group.tasks}
    assert namespaced <= listed and set(tasks.FLAT_ALIASES) <= listed
    assert {name.split(".")[0] for name in namespaced} == {
        "kernel", "theme", "image", "workspace", "data", "job", "pipeline", "model", "serve", "endpoint", "aws", "ops"
    }  # fmt: skip

    def help_of(name: str) -> str:
        """`inv --help NAME` as invoke prints it (in-process: one interpreter, not one per task)."""
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            Program(namespace=tasks.ns).run(["inv", "--help", name], exit=False)
        return printed.getvalue().split("Docstring:", 1)[1]

    helps = {name: help_of(name) for name in sorted(namespaced)}
    for alias in tasks.FLAT_ALIASES:
        twins = [name for name, text in helps.items() if text == help_of(alias)]
        assert len(twins) == 1, f"inv {alias}: {twins or 'no namespaced task'} with the same help"
    # The defaults the README's two-word commands rely on: `inv kernel` and `inv data`.
    assert help_of("kernel") == helps["kernel.create"] and help_of("data") == helps["data.stage"]


def test_the_makefile_wraps_only_entry_points_and_every_inv_call_exists():
    tasks = load_namespace()
    targets = makefile_targets()
    documented = {t for t in targets if re.search(rf"^{t}:.*## ", (REPO / "Makefile").read_text(), re.M)}
    assert documented == ENTRY_POINTS
    for target, recipe in targets.items():
        for line in recipe:
            for name, rest in re.findall(r"\$\(INV\) ([a-z][\w.-]*)(.*)", line):
                options = set(re.findall(r"--([a-z][a-z-]*)", rest))
                assert options <= task_options(tasks.ns, name), f"make {target}: inv {name} has no {options}"


def test_every_make_and_inv_command_in_the_readme_exists():
    tasks = load_namespace()
    code = readme_code()
    targets = set(makefile_targets())
    make_calls = set(re.findall(r"\bmake ([a-z][a-z-]*)", code))
    assert make_calls and make_calls <= targets, f"README names make targets that do not exist: {make_calls - targets}"
    inv_calls = re.findall(r"\binv ([a-z][\w.-]*)([^\n|#;&)]*)", code)
    assert inv_calls
    for name, rest in inv_calls:
        assert name in tasks.ns.task_names or any(name in aliases for aliases in tasks.ns.task_names.values()), (
            f"README: inv {name} is not a task"
        )
        # `--argument=--since`: `--since` is the option's value (inv process hands it to the script), not an option
        options = set(re.findall(r"(?<![\w=-])--([a-z][a-z-]*)", rest))
        assert options <= task_options(tasks.ns, name), (
            f"README: inv {name} has no {options - task_options(tasks.ns, name)}"
        )


# What every namespace uses and no namespace owns: settings (and rules.env, the rules it shares with bin/lib.sh) and
# paths (and layout.env, what goes where under WORKING_DIR, also read by bin/lib.sh), the one error base, the SDK
# import, signals, the file lock.
SHARED_MODULES = {"__init__", "settings", "paths", "sdk", "interrupts", "flock", "errors", "rules", "layout"}


def readme_code_map() -> dict[str, list[str]]:
    """namespace -> the paths its row of the README's namespace table names in its code column."""
    rows = re.findall(r"^\| `([a-z]+)` \| [^|]+ \| ([^|]+) \|$", (REPO / "README.md").read_text(), re.M)
    return {name: re.findall(r"`([^`]+)`", code) for name, code in rows}


def imported_from_the_package(path) -> set[str]:
    """Every `gs_ds_env.<module>.<name>` a task module imports (at its top or inside a task), read from its syntax
    tree: what the code does, not what a comment or a string says."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("gs_ds_env"):
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("gs_ds_env"))
    return found


def test_the_readme_code_map_gives_each_namespace_one_place_in_the_package():
    """A newcomer finds a task's code from its namespace: each namespace's row names where its code is, those paths
    exist, its task module calls into them, and no module of the package is left outside the map."""
    tasks = load_namespace()
    code_map = readme_code_map()
    assert set(code_map) == {group.name for group in tasks.NAMESPACES}
    mapped = set()
    for namespace, paths in code_map.items():
        missing = [path for path in paths if not (REPO / path).exists()]
        assert not missing, f"README code map, {namespace}: {missing} do not exist"
        packages = [path for path in paths if path.startswith("gs_ds_env/")]
        assert packages, f"README code map, {namespace}: no place in gs_ds_env/"
        mapped.update(packages)
        dotted = [path.removesuffix("/").removesuffix(".py").replace("/", ".") for path in packages]
        modules = imported_from_the_package(REPO / f"tasks/{namespace}.py")
        assert any(m == d or m.startswith(d + ".") for m in modules for d in dotted), (
            f"tasks/{namespace}.py imports nothing from {dotted}"
        )
    unmapped = [
        str(path.relative_to(REPO))
        for path in sorted((REPO / "gs_ds_env").glob("*"))
        if path.name != "__pycache__"
        and path.stem not in SHARED_MODULES
        and not any(str(path.relative_to(REPO)).startswith(m.removesuffix("/")) for m in mapped)
        and not any(m.startswith(str(path.relative_to(REPO)) + "/") for m in mapped)
    ]
    assert not unmapped, f"in gs_ds_env/ but in no namespace's row of the README code map: {unmapped}"


def _printed_strings(path):
    """Every string a module may print: its string constants and f-strings (placeholders as {}), not docstrings."""
    import ast

    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            yield "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node.value


def printed_inv_commands() -> list[tuple[str, str, set[str]]]:
    """(where, task, options) of every `inv TASK --option ...` the package, the task modules and the bin/ scripts
    print as a hint."""
    found = []
    sources = [
        (p, list(_printed_strings(p))) for p in sorted([*REPO.glob("gs_ds_env/**/*.py"), *REPO.glob("tasks/*.py")])
    ]
    for script in sorted(REPO.glob("bin/*.sh")):  # what its lines print: their quoted strings, not comments
        lines = [line for line in script.read_text().splitlines() if not line.lstrip().startswith("#")]
        sources.append((script, [q for line in lines for q in re.findall(r'"([^"]*)"', line)]))
    for path, texts in sources:
        for text in texts:
            for match in re.finditer(r"\binv ([a-z][a-z0-9.|-]*)([^`\n'\"]*)", text):
                options, tail = set(), match.group(2).split()
                for token in tail:
                    if token.startswith(("#", "(", ";")) or token.endswith(";"):
                        break
                    option = re.match(r"\[?--([a-z][a-z0-9-]*)", token)
                    if option:
                        options.add(option.group(1))
                    if token.endswith((",", ":", ")")):  # the command ends there (`inv lock --theme x, then ...`)
                        break
                for name in match.group(1).split("|"):
                    found.append((str(path.relative_to(REPO)), name, options))
    return found


def test_every_inv_command_the_code_prints_as_a_hint_exists_with_its_options():
    """A hint that names a command that does not exist (`inv endpoint delete NAME`) sends the user nowhere."""
    tasks = load_namespace()
    commands = printed_inv_commands()
    assert len(commands) > 40 and ("gs_ds_env/serve/endpoint.py", "endpoint.delete", set()) in commands
    names = set(tasks.ns.task_names) | {alias for aliases in tasks.ns.task_names.values() for alias in aliases}
    for where, name, options in commands:
        assert name in names, f"{where} prints `inv {name}`, which is not a task"
        assert options <= task_options(tasks.ns, name), (
            f"{where}: inv {name} has no {options - task_options(tasks.ns, name)}"
        )


# ---- no traceback for what escapes the package's own handling ----------------------------------------------------
@pytest.mark.parametrize(
    "raised, line, code",
    [
        (
            lambda: __import__("botocore.exceptions").exceptions.EndpointConnectionError(endpoint_url="http://x:1"),
            'error: an AWS call: Could not connect to the endpoint URL: "http://x:1" (no answer: check the network, '
            "the region and AWS_ENDPOINT_URL)",
            1,
        ),
        (
            lambda: __import__("botocore.exceptions").exceptions.ParamValidationError(report="Invalid bucket name"),
            "error: an AWS call: ParamValidationError: Parameter validation failed:\nInvalid bucket name",
            1,
        ),
        (
            lambda: __import__("botocore.parsers").parsers.ResponseParserError("Unable to parse response (not XML)"),
            "error: an AWS call: ResponseParserError: Unable to parse response (not XML)",
            1,
        ),
        (
            lambda: KeyboardInterrupt(),
            "error: interrupted (Ctrl-C); what finished is kept, a half-done run says INTERRUPTED",
            130,
        ),
    ],
)
def test_clear_errors_turns_escaping_exceptions_into_one_line(raised, line, code):
    from invoke import Exit

    import tasks

    @tasks.clear_errors
    def failing():
        raise raised()

    with pytest.raises(Exit) as stopped:
        failing()
    assert (stopped.value.message, stopped.value.code) == (line, code)


def test_a_task_refused_while_the_sdk_imports_in_the_background_ends_after_the_import():
    """A run task starts the SDK's import on its first line; one refused at once (`inv process` without --code) must
    not finalize the interpreter under that import (it crashed with SIGSEGV after the error line, in CI under load):
    the interpreter waits for the import's thread before its exit functions run, then exits with the refusal's code."""
    program = """
import atexit, sys, threading
importing = lambda: any(t.name == "sagemaker-sdk-import" for t in threading.enumerate())
atexit.register(lambda: print("importing at exit:", importing(), flush=True))
import tasks
from tasks.common import sdk_in_background
sdk_in_background(dry_run=False)
print("importing at the refusal:", importing(), flush=True)
sys.exit(2)
"""
    ended = subprocess.run([sys.executable, "-c", program], cwd=REPO, env=tool_env(), capture_output=True, text=True)
    lines = ended.stdout.splitlines()
    assert (ended.returncode, lines) == (2, ["importing at the refusal: True", "importing at exit: False"]), (
        ended.stderr
    )


@pytest.mark.parametrize(
    "args, option",
    [
        (["clean", "--runs", "--older-than", "abc"], "--older-than 'abc' is not a number"),
        (["clean", "--runs", "--older-than", "nan"], "--older-than 'nan' is not a number"),
        (["doctor", "--threshold", "abc"], "--threshold 'abc' is not a number"),
        (["app", "--port", "abc"], "--port 'abc' is not an integer"),
        (["notebook", "--timeout", "abc"], "--timeout 'abc' is not an integer"),
    ],
)
def test_non_numeric_option_values_are_one_line(copy, args, option):
    one_line_refusal(run_inv(copy, *args), option)


@pytest.mark.parametrize(
    "name, message",
    [("../outside", "job name '../outside' is invalid"), ("never-started", "no readable run record")],
)
def test_attach_reads_only_a_record_under_runs(copy, name, message):
    aws = dict(TARGET="sagemaker", S3_BUCKET="team-bucket", SAGEMAKER_ROLE_ARN="arn:aws:iam::123456789012:role/r")
    one_line_refusal(run_inv(copy, "job.attach", name, **aws), message)


@pytest.mark.parametrize(
    "args",
    [
        ["--list"],
        ["deploy", "--dry-run"],
        ["process", "--code", "themes/tabular/example/prepare.py", "--dry-run"],
        ["train", "--entry-point", "themes/tabular/example/train.py", "--target", "sagemaker", "--dry-run"],
    ],
)
def test_the_task_list_and_dry_run_plans_load_no_aws_docker_or_sdk_client(copy, titanic_csv, args):
    """What makes `inv` start slowly (botocore 0.13 s, docker 0.06 s, the SDK 1.3 s) is imported by the first call
    that needs it, never by a list or a plan; the plan is still the whole plan."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "invoke", *args], cwd=copy, capture_output=True, text=True,
        env=tool_env(
            WORKING_DIR=str(copy.parent / "work"), TITANIC_CSV=str(titanic_csv), PY="3.11", AWS_REGION="eu-west-1",
            S3_BUCKET="gs-plan-bucket", SAGEMAKER_ROLE_ARN="arn:aws:iam::123456789012:role/gs-plan",
        ),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time")
    }
    assert {"invoke", "dotenv"} <= imported
    assert not {"boto3", "botocore", "docker", "sagemaker"} & imported, sorted(
        {"boto3", "botocore", "docker", "sagemaker"} & imported
    )
    if "--dry-run" in args:
        assert result.stdout.startswith("plan for") and "report.md + run.json" in result.stdout, result.stdout
