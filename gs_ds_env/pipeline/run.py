"""`inv pipeline.run NAME`: the module's pipeline built for the target (context.py), its parameters checked, run
here (local.py) or on SageMaker Pipelines (remote.py), and recorded (record.py) — its evaluation kept, its model
registered (locally: registry.py, since local mode has none), its predictions counted."""

from __future__ import annotations

import json
import time
from pathlib import Path

from gs_ds_env import aws, image
from gs_ds_env.pipeline import definition, local, record, registry, remote
from gs_ds_env.pipeline.context import PipelineContext
from gs_ds_env.pipeline.definition import PipelineError, PipelineFailed
from gs_ds_env.settings import Settings

LOCAL_ROLE = "arn:aws:iam::000000000000:role/local-mode-unused"


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


def _context(settings: Settings, module_name: str, *, planned: bool, image_uri: str, boto_session=None,
             run_dir: Path | None = None) -> PipelineContext:  # fmt: skip
    name = definition.pipeline_name(settings, module_name)
    if settings.target == "local":
        container_root = (run_dir or settings.runs_dir / "<execution>") / "container"
        session = local.session(settings, container_root)
        return PipelineContext(settings, name, session, image_uri, LOCAL_ROLE, True,
                               local_base=(run_dir or settings.runs_dir / "<execution>") / "steps")  # fmt: skip
    return PipelineContext(
        settings, name, remote.session(settings, boto_session), image_uri, settings.sagemaker_role_arn, False,
        upload=remote.uploader(settings, boto_session, planned),
    )  # fmt: skip


def _checked_parameters(settings: Settings, module, module_name: str, given: list[str], boto_session) -> dict:
    """--param values checked against the pipeline's own parameters before anything is built, sent or printed."""
    ctx = _context(settings, module_name, planned=True, image_uri="<image>", boto_session=boto_session)
    return parse_parameters(module.build(ctx), given)


def plan(settings: Settings, module_name: str, given: list[str]) -> str:
    """What `inv pipeline.run` would do: the image, the steps as a graph, the parameters; nothing runs or is sent."""
    module = definition.load(settings, module_name)
    boto_session = None if settings.target == "local" else aws.session(settings)
    _checked_parameters(settings, module, module_name, given, boto_session)
    if settings.target == "local":
        image_uri = image.build(settings, dry_run=True).uri
    else:
        from gs_ds_env.aws import iam

        image_uri = image.push_plan(settings, iam.account_of(settings.sagemaker_role_arn)).image_uri
    ctx = _context(settings, module_name, planned=True, image_uri=image_uri, boto_session=boto_session)
    pipeline = module.build(ctx)
    values = parse_parameters(pipeline, given)
    document = json.loads(pipeline.definition())
    parameters = {p.name: values.get(p.name, p.default_value) for p in pipeline.parameters}
    lines = [
        f"plan for inv pipeline.run {module_name} (pipeline {ctx.name}, TARGET={settings.target}):",
        f"  1. the theme image {image_uri} ({'built here' if ctx.local else 'built and pushed to ECR'}); every "
        "step runs in it",
        "  2. the steps (Mermaid):",
        *(f"     {line}" for line in definition.mermaid(definition.nodes(document), {}).splitlines()),
        f"  parameters: {json.dumps(parameters, default=str)}",
    ]
    if ctx.local:
        lines += [
            "  3. the SDK's LocalPipelineSession runs each step in a container here, in order; no step cache "
            "(every step runs); no model registry (a version is recorded under runs/model-registry/)",
        ]
    else:
        lines += [
            f"  3. code and local inputs to s3://{settings.s3_bucket}/{settings.s3_prefix}/pipeline-code|pipeline-input/"
            "<name>/<digest>/ (content-addressed), outputs to "
            f"s3://{settings.s3_bucket}/{settings.s3_prefix}/pipelines/{ctx.name}/<execution id>/<step>/<output>/",
            f"  4. sagemaker:CreatePipeline or UpdatePipeline {ctx.name} (role {settings.sagemaker_role_arn}, tagged), "
            "StartPipelineExecution; steps followed until it ends (Ctrl-C: StopPipelineExecution); cached steps "
            "(inputs unchanged within 30 days) are not run again",
        ]
    lines.append(
        f"  {4 if ctx.local else 5}. runs/<pipeline>-<time>/report.md + run.json: each step, the graph, the "
        "evaluation, the registered version"
    )
    return "\n".join(lines)


def run(settings: Settings, module_name: str, given: list[str], command: str, detach: bool = False) -> Path:
    """Run the pipeline on the target; returns runs/<pipeline>-<time>/run.json. A failed or stopped execution is
    recorded, then raised (PipelineError: one line, the failing step and why)."""
    module = definition.load(settings, module_name)
    run_dir = settings.runs_dir / record.run_folder_name(module_name)
    started, clock = record.started_now(), time.monotonic()
    boto_session = None if settings.target == "local" else aws.session(settings)
    _checked_parameters(settings, module, module_name, given, boto_session)
    if boto_session is None:
        (run_dir / "container").mkdir(parents=True, exist_ok=True)
    built = image.build(settings) if boto_session is None else image.push(settings, aws.account_id(boto_session))
    ctx = _context(settings, module_name, planned=False, image_uri=built.uri, boto_session=boto_session,
                   run_dir=run_dir)  # fmt: skip
    pipeline = module.build(ctx)
    values = parse_parameters(pipeline, given)
    parameters = {p.name: values.get(p.name, p.default_value) for p in pipeline.parameters}
    document = json.loads(pipeline.definition())
    entry = record.PipelineRecord(
        "pipeline", module_name, ctx.name, settings.target, "Executing", "", started, built.uri,
        {k: v for k, v in parameters.items()}, command, definition=document,
    )  # fmt: skip
    if ctx.local:
        try:
            execution = local.execute(settings, pipeline, values, run_dir / "container", command)
        except KeyboardInterrupt as interrupted:
            entry.status, entry.failure = "Stopped", getattr(interrupted, "status", "interrupted")
            record.write(run_dir, entry)
            raise
        described = execution.describe()
        entry.execution, entry.status = execution.pipeline_execution_name, described["PipelineExecutionStatus"]
        entry.failure = described.get("FailureReason")
        entry.steps = local.step_facts(execution)
    else:
        execution = remote.start(settings, pipeline, values, [r.group for r in ctx.registrations])
        entry.execution, entry.console_url = execution.arn, remote.console_url(settings, ctx.name)
        if detach:
            entry.status = "in progress (detached)"
            run_json, _ = record.write(run_dir, entry)
            print(f"pipeline {ctx.name} started and left running (--detach): {execution.arn}\n"
                  f"  follow it: {entry.console_url}; see it: inv pipeline.list", flush=True)  # fmt: skip
            return run_json
        try:
            described = remote.follow(boto_session, execution, ctx.name)
        except KeyboardInterrupt as interrupted:
            entry.status, entry.failure = "Stopped", getattr(interrupted, "status", "interrupted")
            entry.steps = remote.step_facts(boto_session, execution.arn)
            record.write(run_dir, entry)
            raise
        entry.status, entry.failure = described["PipelineExecutionStatus"], described.get("FailureReason")
        entry.steps = remote.step_facts(boto_session, execution.arn)
    entry.seconds = round(time.monotonic() - clock, 1)
    _collect(settings, pipeline, ctx, entry, boto_session, run_dir)
    run_json, report = record.write(run_dir, entry)
    print(f"report: {report}\nrun record: {run_json}", flush=True)
    if entry.status != "Succeeded":
        failed = next((f"{n}: {s['failure']}" for n, s in entry.steps.items() if s.get("failure")), entry.failure)
        raise PipelineFailed(f"pipeline {ctx.name} {entry.status.lower()}: {failed} (report: {report})")
    return run_json


def _read(uri: str, boto_session) -> dict:
    if uri.startswith("file://"):
        path = Path(uri.removeprefix("file://"))
        return json.loads(path.read_text()) if path.is_file() else {}
    return remote.read_json(boto_session, uri)


def _collect(settings: Settings, pipeline, ctx: PipelineContext, entry, boto_session, run_dir: Path) -> None:
    """The evaluation's property files, the registered version, the predictions counted."""
    from sagemaker.workflow.steps import ProcessingStep, TransformStep

    for step in _walk(pipeline.steps):
        outputs = entry.steps.get(step.name, {}).get("outputs", {})
        if isinstance(step, ProcessingStep):
            for property_file in step.property_files or []:
                if property_file.output_name in outputs:
                    where = outputs[property_file.output_name].rstrip("/") + "/" + property_file.path
                    entry.evaluation[property_file.name] = _read(where, boto_session)
        if (
            isinstance(step, TransformStep)
            and ctx.local
            and entry.steps.get(step.name, {}).get("status") == "Succeeded"
        ):
            entry.predictions[step.name] = _count_rows(step, entry, ctx)
    conditions = entry.conditions()
    for wanted in ctx.registrations:
        passed = conditions.get(wanted.gate) and entry.steps.get(wanted.train_step, {}).get("status") == "Succeeded"
        if not passed:
            continue
        if ctx.local:
            model = Path(entry.steps[wanted.train_step]["outputs"]["model"].removeprefix("file://"))
            version = registry.register_local(
                settings, wanted.group, model, entry.evaluation.get(wanted.property_file, {}), run_dir.name
            )
            entry.registered = {"group": version.group, "version": version.version, "status": version.status}
            entry.notes.append(
                "Local mode has no model registry: the version is recorded in runs/model-registry/ "
                f"(`inv model.list`, `inv model.approve {version.version}`)."
            )
        else:
            arn = next(
                (
                    s["metadata"]["RegisterModel"]["Arn"]
                    for s in entry.steps.values()
                    if "RegisterModel" in s["metadata"]
                ),
                None,
            )
            if arn:
                client = aws.client(boto_session, "sagemaker")
                described = client.describe_model_package(ModelPackageName=arn)
                entry.registered = {
                    "group": wanted.group, "version": described.get("ModelPackageVersion"),
                    "status": described.get("ModelApprovalStatus"), "arn": arn,
                }  # fmt: skip
    if ctx.local:
        entry.notes.append("Local mode has no step cache: every step ran (SageMaker skips unchanged cached steps).")


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
