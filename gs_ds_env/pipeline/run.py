"""`inv pipeline.run NAME`: the module's pipeline built for the target (context.py), its parameters checked, run
here (local.py) or on SageMaker Pipelines (remote.py), and recorded (record.py) — its evaluation kept, its model
registered (locally: registry.py, since local mode has none), its predictions counted."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gs_ds_env.pipeline import definition, record, targets
from gs_ds_env.pipeline.context import PipelineContext
from gs_ds_env.pipeline.definition import PipelineError, PipelineFailed
from gs_ds_env.settings import Settings


def parse_parameters(pipeline, given: list[str]) -> dict:
    """--param Name=value, typed as the pipeline declares it; an unknown name or a bad value is one line."""
    declared = {parameter.name: parameter for parameter in pipeline.parameters}
    values = {}
    for item in given:
        key, sep, value = item.partition("=")
        if not sep or key not in declared:
            raise PipelineError(
                f"--param {item!r}: {pipeline.name} takes {', '.join(f'{k}=' for k in declared) or 'no parameters'}"
            )
        kind = declared[key].parameter_type.python_type
        try:
            values[key] = (value.lower() in ("1", "true", "yes")) if kind is bool else kind(value)
        except ValueError:
            raise PipelineError(f"--param {key}={value!r}: {key} is a {kind.__name__}") from None
    return values


def _walk(steps):
    """Every step, those in a condition's branches too."""
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.step_collections import StepCollection

    for step in steps:
        if isinstance(step, StepCollection):
            yield from _walk(step.steps)
        else:
            yield step
            if isinstance(step, ConditionStep):
                yield from _walk(step.if_steps + step.else_steps)


def _checked_parameters(target, module, module_name: str, given: list[str]) -> dict:
    """--param values checked against the pipeline's own parameters before anything is built, sent or printed."""
    ctx = target.context(definition.pipeline_name(target.settings, module_name), "<image>", planned=True)
    return parse_parameters(module.build(ctx), given)


def plan(settings: Settings, module_name: str, given: list[str]) -> str:
    """What `inv pipeline.run` would do: the image, the steps as a graph, the parameters; nothing runs or is sent."""
    module = definition.load(settings, module_name)
    target = targets.for_settings(settings)
    _checked_parameters(target, module, module_name, given)
    ctx = target.context(definition.pipeline_name(settings, module_name), target.planned_image(), planned=True)
    pipeline = module.build(ctx)
    values = parse_parameters(pipeline, given)
    document = json.loads(pipeline.definition())
    parameters = {p.name: values.get(p.name, p.default_value) for p in pipeline.parameters}
    image_line, *rest = target.plan_lines(ctx)
    steps = [
        image_line,
        "the steps (Mermaid):\n"
        + "\n".join(f"     {line}" for line in definition.mermaid(definition.nodes(document), {}).splitlines()),
        *rest,
        "runs/<pipeline>-<time>/report.md + run.json: each step, the graph, the evaluation, the registered version",
    ]
    return "\n".join(
        [
            f"plan for inv pipeline.run {module_name} (pipeline {ctx.name}, TARGET={settings.target}):",
            f"  1. {steps[0]}",
            f"  2. {steps[1]}",
            f"  parameters: {json.dumps(parameters, default=str)}",
            *(f"  {number}. {step}" for number, step in enumerate(steps[2:], start=3)),
        ]
    )


def run(settings: Settings, module_name: str, given: list[str], command: str, detach: bool = False) -> Path:
    """Run the pipeline on the target; returns runs/<pipeline>-<time>/run.json. A failed or stopped execution is
    recorded, then raised (PipelineError: one line, the failing step and why)."""
    module = definition.load(settings, module_name)
    run_dir = settings.runs_dir / record.run_folder_name(module_name)
    started, clock = record.started_now(), time.monotonic()
    target = targets.for_settings(settings)
    _checked_parameters(target, module, module_name, given)
    image_uri = target.image(run_dir)
    ctx = target.context(definition.pipeline_name(settings, module_name), image_uri, run_dir)
    pipeline = module.build(ctx)
    values = parse_parameters(pipeline, given)
    parameters = {p.name: values.get(p.name, p.default_value) for p in pipeline.parameters}
    document = json.loads(pipeline.definition())
    entry = record.PipelineRecord(
        "pipeline", module_name, ctx.name, settings.target, "Executing", "", started, image_uri,
        {k: v for k, v in parameters.items()}, command, definition=document,
    )  # fmt: skip
    left_running = target.execute(pipeline, values, run_dir, entry, ctx, detach)
    if left_running:
        return left_running
    entry.seconds = round(time.monotonic() - clock, 1)
    _collect(target, pipeline, ctx, entry, run_dir)
    run_json, report = record.write(run_dir, entry)
    print(f"report: {report}\nrun record: {run_json}", flush=True)
    if entry.status != "Succeeded":
        failed = next((f"{n}: {s['failure']}" for n, s in entry.steps.items() if s.get("failure")), entry.failure)
        raise PipelineFailed(f"pipeline {ctx.name} {entry.status.lower()}: {failed} (report: {report})")
    return run_json


def _collect(target, pipeline, ctx: PipelineContext, entry, run_dir: Path) -> None:
    """The evaluation's property files, the registered version, the predictions counted."""
    from sagemaker.workflow.steps import ProcessingStep, TransformStep

    for step in _walk(pipeline.steps):
        facts = entry.steps.get(step.name, {})
        outputs = facts.get("outputs", {})
        if isinstance(step, ProcessingStep):
            for property_file in step.property_files or []:
                if property_file.output_name in outputs:
                    where = outputs[property_file.output_name].rstrip("/") + "/" + property_file.path
                    entry.evaluation[property_file.name] = target.read_json(where)
        if isinstance(step, TransformStep) and target.counts_predictions and facts.get("status") == "Succeeded":
            entry.predictions[step.name] = _count_rows(step, entry, ctx)
    conditions = entry.conditions()
    for wanted in ctx.registrations:
        if conditions.get(wanted.gate) and entry.steps.get(wanted.train_step, {}).get("status") == "Succeeded":
            target.register(wanted, entry, run_dir)
    entry.notes.extend(target.closing_notes())


def _count_rows(step, entry, ctx: PipelineContext) -> dict:
    """Rows in (the transform's input files) and predictions out: a batch transform loses none."""
    facts = entry.steps[step.name]
    out = Path(facts["outputs"].get("predictions", "").removeprefix("file://"))
    source = Path(str(facts.get("transform_input") or "").removeprefix("file://"))
    files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
    rows_in = sum(_lines(p) for p in files) if str(source) not in ("", ".") else 0
    rows_out = sum(_lines(p) for p in sorted(out.rglob("*.out")))
    return {"rows_in": rows_in, "rows_out": rows_out, "path": str(out)}


def _lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for line in handle if line.strip())
