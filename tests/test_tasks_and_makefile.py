"""The task surface stays one thing: invoke namespaces (kernel.create, image.build, ...) with the old flat names
as aliases of the same tasks, a Makefile that only wraps entry points, and a README whose `make` and `inv`
commands all exist with the options they use."""

from __future__ import annotations

import importlib.util
import re

from conftest import REPO

ENTRY_POINTS = {"help", "venv", "kernel", "deploy", "doctor", "test", "lint", "format", "bench"}


def load_namespace():
    spec = importlib.util.spec_from_file_location("project_tasks", REPO / "tasks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_every_flat_name_is_the_same_task_as_in_its_namespace():
    tasks = load_namespace()
    for alias, function in tasks.FLAT_ALIASES.items():
        namespaced = [
            f"{group.name}.{name}" for group in tasks.NAMESPACES for name, t in group.tasks.items() if t is function
        ]
        assert namespaced, f"inv {alias} has no namespaced name"
        assert tasks.ns[alias] is tasks.ns[namespaced[0]]
    # The defaults the README's two-word commands rely on: `inv kernel` and `inv data`.
    assert tasks.ns["kernel"] is tasks.ns["kernel.create"] and tasks.ns["data"] is tasks.ns["data.stage"]


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
        options = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", rest))
        assert options <= task_options(tasks.ns, name), (
            f"README: inv {name} has no {options - task_options(tasks.ns, name)}"
        )
