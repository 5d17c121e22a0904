"""A pipeline module (pipelines/<name>.py, a `build(ctx)` returning the SDK's Pipeline), found and loaded; and a
pipeline definition (the JSON SageMaker stores) read as a graph of steps, drawn as Mermaid coloured by status."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.errors import GsError, InputError
from gs_ds_env.settings import Settings

NAME = re.compile(r"[a-z][a-z0-9-]{0,40}")
REFERENCE = re.compile(r"Steps\.([A-Za-z0-9_-]+)\.")


class PipelineError(InputError):
    """A pipeline that cannot be found, built or run as asked; the message says what to do."""


class PipelineFailed(GsError):
    """An execution that ran and failed or was stopped: the failing step and why (exit 1)."""


def folder(settings: Settings) -> Path:
    return settings.repo_root / "pipelines"


def available(settings: Settings) -> list[str]:
    return sorted(p.stem for p in folder(settings).glob("*.py") if not p.name.startswith("_"))


def load(settings: Settings, name: str):
    """pipelines/<name>.py as a module with a build(ctx); one line naming what exists when it is not there."""
    if not NAME.fullmatch(name):
        raise PipelineError(f"pipeline {name!r} is not a pipeline name: lowercase letters, digits and '-'")
    path = folder(settings) / f"{name}.py"
    if not path.is_file():
        raise PipelineError(
            f"no pipeline {name!r}: pipelines/ holds {', '.join(available(settings)) or 'none'}; "
            f"write pipelines/{name}.py with a build(ctx) (README: Pipelines)"
        )
    _quiet_sdk()
    spec = importlib.util.spec_from_file_location(f"gs_ds_env_pipelines.{name.replace('-', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "build", None)):
        raise PipelineError(f"pipelines/{name}.py has no build(ctx): define one returning the SDK's Pipeline")
    return module


def _quiet_sdk() -> None:
    """The SDK imported the project's way (its v2 banner and telemetry off) before the module imports it, and the
    pipeline-session chatter a user can do nothing about left out: jobs are not started while a definition is
    built, and the SDK drops job names the execution sets."""
    import logging
    import warnings

    from gs_ds_env.sdk import sagemaker

    sagemaker()
    logging.getLogger("sagemaker.workflow.utilities").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Running within a PipelineSession")


def pipeline_name(settings: Settings, name: str) -> str:
    """What SageMaker calls it: <BASE_JOB_NAME>-<module>."""
    return f"{settings.base_job_name}-{name}"


@dataclass
class Node:
    name: str
    kind: str  # Processing, Training, Condition, Fail, Model, RegisterModel, Transform, ...
    upstream: set[str] = field(default_factory=set)
    branch: tuple[str, str] | None = None  # (condition, "true"|"false") for a step inside a condition's branch


def nodes(definition: dict) -> list[Node]:
    """The steps in definition order, each with the steps it reads from or waits for, and its condition branch."""
    found: list[Node] = []

    def visit(steps: list[dict], branch: tuple[str, str] | None) -> None:
        for step in steps:
            arguments = step.get("Arguments", {})
            own = (
                {k: v for k, v in arguments.items() if k not in ("IfSteps", "ElseSteps")}
                if isinstance(arguments, dict)
                else arguments
            )
            text = json.dumps({**{k: v for k, v in step.items() if k not in ("Name", "Arguments")}, "Arguments": own})
            node = Node(step["Name"], step["Type"], set(REFERENCE.findall(text)) | set(step.get("DependsOn", [])))
            node.upstream.discard(step["Name"])
            if branch:
                node.branch = branch
                node.upstream.add(branch[0])
            found.append(node)
            if step["Type"] == "Condition":
                visit(arguments.get("IfSteps", []), (step["Name"], "true"))
                visit(arguments.get("ElseSteps", []), (step["Name"], "false"))

    visit(definition.get("Steps", []), None)
    return found


STATUS_CLASSES = {
    "Succeeded": "fill:#d4edda,stroke:#2e7d32,color:#1b5e20",
    "Failed": "fill:#f8d7da,stroke:#c62828,color:#8e0000",
    "Executing": "fill:#fff3cd,stroke:#f9a825,color:#5d4037",
    "Stopped": "fill:#e0e0e0,stroke:#616161,color:#212121",
    "NotRun": "fill:#fafafa,stroke:#bdbdbd,color:#9e9e9e,stroke-dasharray: 4 3",
}


def mermaid(graph: list[Node], steps: dict[str, dict]) -> str:
    """A flowchart of the steps, each coloured by its status (`steps`: name -> {status, seconds})."""
    ids = {node.name: f"s{index}" for index, node in enumerate(graph)}
    lines = ["flowchart LR"]
    for node in graph:
        status = steps.get(node.name, {}).get("status") or "NotRun"
        seconds = steps.get(node.name, {}).get("seconds")
        label = f"{node.name}<br/>{node.kind}" + (f" · {seconds:.0f} s" if seconds is not None else "")
        shape = ("{{", "}}") if node.kind == "Condition" else ("[", "]")
        lines.append(
            f'    {ids[node.name]}{shape[0]}"{label}"{shape[1]}:::{status if status in STATUS_CLASSES else "NotRun"}'
        )
    for node in graph:
        for upstream in sorted(node.upstream):
            if upstream not in ids:
                continue
            label = f"|{node.branch[1]}|" if node.branch and node.branch[0] == upstream else ""
            lines.append(f"    {ids[upstream]} -->{label} {ids[node.name]}")
    lines += [f"    classDef {name} {style}" for name, style in STATUS_CLASSES.items()]
    return "\n".join(lines)
