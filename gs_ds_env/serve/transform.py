"""`inv transform`: batch predictions over files, with the SDK's Transformer, on either target.

The input (a .csv or .jsonl file, or a folder of them) is split by line (SageMaker's SplitType=Line) and sent in
mini-batches (MultiRecord, at most 6 MB each) to the image's `serve`; each output row is joined to its input row
(JoinSource=Input), so rows keep their ids. Every input row must get exactly one answer, on both targets: the counts
are checked, and a transform that would lose or add a row fails with the server's own line.

A CSV has no header unless `--header` says so, or the model's handler declares it reads one (the Titanic handler's
CSV_HEADER): a header is never guessed from the data. A header is taken off before sending (batch transform splits a
file by line: one mini-batch would hold it) and given to the model as GS_CSV_COLUMNS (one CSV line); the joined
output has it back with a `prediction` column. A record with a line break inside a quoted field cannot be split by
line (SageMaker would cut it in two): it is refused, naming its line, before anything runs.

local: Transformer(instance_type="local") in SageMaker local mode; local mode does not join (DataProcessing), so the
join is done here, row by row, after checking that every input row has exactly one prediction.
sagemaker: the image pushed, the model (repacked with its code when the handler comes from the run's entry point)
and the input in S3, CreateTransformJob with DataProcessing JoinSource=Input, --instance-count N instances (files
are spread across them: give a folder of several files for N > 1); the output's rows are counted against the input's.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from gs_ds_env import aws
from gs_ds_env.data import s3_data
from gs_ds_env.interrupts import interruptible
from gs_ds_env.job import local_containers
from gs_ds_env.job.local_job import local_session
from gs_ds_env.job.report import invoked_command
from gs_ds_env.ops import leftovers
from gs_ds_env.sdk import LOCAL_ROLE, sagemaker
from gs_ds_env.serve import ServeError, local, local_mode, prepare
from gs_ds_env.serve.model_source import ModelSource
from gs_ds_env.serve.transform_input import COLUMNS_VARIABLE, TransformInput, stage
from gs_ds_env.settings import ConfigError, Settings, validate_for_aws

MAX_PAYLOAD_MB = 6
POLL_SECONDS = 15


def _answers(produced: Path) -> list[str]:
    return [line for line in produced.read_text().split("\n") if line.strip()] if produced.is_file() else []


def join(inputs: TransformInput, predictions_dir: Path, output: Path) -> dict[str, int]:
    """Each input file with its predictions, row by row; every row must have exactly one (else nothing is
    written)."""
    answered = {}
    for item in inputs.files:
        rows = item.rows(bool(inputs.header))
        answers = _answers(predictions_dir / f"{item.path.name}.out")
        if len(answers) != len(rows):
            first = next((a for a in answers if not _is_prediction(a, inputs.content_type)), answers[:1] or ["nothing"])
            raise ServeError(
                f"transform of {item.path.name}: {len(answers)} answer line(s) for {len(rows)} rows; the server said: "
                f"{first[:300]}"
            )
        answered[item.path.name] = (rows, answers)
    counts = {}
    for item in inputs.files:
        rows, answers = answered[item.path.name]
        with (output / item.path.name).open("w", newline="") as handle:
            if inputs.content_type == "text/csv":
                if inputs.header:
                    csv.writer(handle, lineterminator="\n").writerow([*(inputs.columns or []), "prediction"])
                handle.writelines(f"{row},{answer}\n" for row, answer in zip(rows, answers, strict=True))
            else:
                for row, answer in zip(rows, answers, strict=True):
                    handle.write(json.dumps({**json.loads(row), "SageMakerOutput": json.loads(answer)}) + "\n")
        counts[item.path.name] = len(rows)
    return counts


def _is_prediction(line: str, kind: str) -> bool:
    try:
        json.loads(line) if kind != "text/csv" else [float(v) for v in next(csv.reader([line]))]
        return True
    except (ValueError, StopIteration):
        return False


def default_output(settings: Settings, source: ModelSource) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if source.run_dir:
        return source.run_dir / f"transform-{stamp}"
    raise ConfigError(
        "--output DIR is needed with --model-data (from a run, the default is runs/<job>/transform-<time>/)"
    )


def check_output(output: Path) -> None:
    """A new folder or an empty one: nothing is overwritten, and a file is not a folder."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file: give a new folder (the output is one file per input file)")
    if output.is_dir() and any(output.iterdir()):
        raise ConfigError(f"--output {output} is not empty: choose a new folder (nothing is overwritten)")


class LocalTransform:
    """SageMaker local mode on this machine: one container, local files in and out."""

    def check(self, settings: Settings, instance_count: int, output: str | None) -> None:
        if instance_count > 1:
            raise ConfigError(f"--instance-count {instance_count}: 1-100, and 1 with TARGET=local (one machine)")

    def destination(self, settings: Settings, source: ModelSource, output: str | None) -> Path:
        destination = Path(output) if output else default_output(settings, source)
        check_output(destination)
        return destination

    def plan_lines(self, settings: Settings, output: str, instance_count: int) -> list[str]:
        return [
            "  SageMaker local mode: Transformer(instance_type='local') on the theme image (serve), then each "
            "prediction joined to its input row here (every row must have exactly one)",
            f"  output: {output}/<file> (input columns + prediction)",
        ]

    def run(self, settings: Settings, source: ModelSource, inputs: TransformInput, destination, instance_count: int):
        run_local(settings, source, inputs, destination)


class SageMakerTransform:
    """A SageMaker batch transform job: the model and the input in S3, the output to S3."""

    def check(self, settings: Settings, instance_count: int, output: str | None) -> None:
        validate_for_aws(settings)
        if output and not output.startswith("s3://"):
            raise ConfigError(f"--output {output}: TARGET=sagemaker writes to S3, give an s3:// URI (or none)")

    def destination(self, settings: Settings, source: ModelSource, output: str | None) -> str | None:
        return output

    def plan_lines(self, settings: Settings, output: str, instance_count: int) -> list[str]:
        return [
            f"  push the image to ECR {settings.ecr_repository}; model and input to {s3_data.uri(settings)}/",
            f"  sagemaker:CreateModel, sagemaker:CreateTransformJob ({instance_count} instance(s), JoinSource=Input, tags)",
            f"  output: {output}; its rows counted against the input's; the model is deleted when the job ends",
        ]

    def run(self, settings: Settings, source: ModelSource, inputs: TransformInput, destination, instance_count: int):
        run_sagemaker(settings, source, inputs, destination, instance_count)


TARGETS = {"local": LocalTransform(), "sagemaker": SageMakerTransform()}


def check_target(settings: Settings, instance_count: int, output: str | None) -> None:
    """What the target can do, before the model or the input is read: one machine locally, S3 on SageMaker."""
    if not 1 <= instance_count <= 100:
        raise ConfigError(f"--instance-count {instance_count}: 1-100, and 1 with TARGET=local (one machine)")
    TARGETS[settings.target].check(settings, instance_count, output)


def run(
    settings: Settings, source: ModelSource, inputs: TransformInput, output: str | None, instance_count: int,
    dry_run: bool = False,
) -> None:  # fmt: skip
    """`inv transform`: the plan, then (unless a dry run) the transform on the target."""
    target = TARGETS[settings.target]
    destination = target.destination(settings, source, output)
    shown = str(destination or "s3://<bucket>/<prefix>/transform-output/<job>/")
    print("\n".join(plan(settings, source, inputs, shown, instance_count)), flush=True)
    if dry_run:
        return
    target.run(settings, source, inputs, destination, instance_count)


def plan(
    settings: Settings, source: ModelSource, inputs: TransformInput, output: str, instance_count: int
) -> list[str]:
    sent = inputs.s3_uri or ", ".join(f"{f.path.name} ({len(f.lines)} lines)" for f in inputs.files)
    lines = [
        f"transform {sent} ({inputs.content_type}) with {source.label}",
        f"  split by line, mini-batches of at most {MAX_PAYLOAD_MB} MB (MultiRecord); {inputs.header_note()}",
        "  handler: " + (f"{source.code.origin} when it defines one, " if source.code else "")
        + "the model's own, or the framework defaults (serve --check says which, before anything runs)",
    ]  # fmt: skip
    return lines + TARGETS[settings.target].plan_lines(settings, output, instance_count)


def _model_env(inputs: TransformInput, model: prepare.PreparedModel) -> dict[str, str] | None:
    env = dict(model.environment)
    if inputs.columns:
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(inputs.columns)
        env[COLUMNS_VARIABLE] = line.getvalue()
    return env or None


def run_local(settings: Settings, source: ModelSource, inputs: TransformInput, output: Path) -> dict[str, int]:
    if inputs.s3_uri:
        raise ConfigError("TARGET=local transforms local files: download the s3:// input, or set TARGET=sagemaker")
    check_output(output)
    # Local mode serves the model on a port while it transforms: SERVE_PORT, or a free one when that is taken.
    port = local.pick_port(settings, settings.serve_port, fallback=True)
    image_ref = local.serving_image(settings, source)
    settings.working_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="transform-", dir=settings.working_dir))
    leftovers.claim(scratch, settings, "transform", port=port, command=invoked_command())
    try:
        with interruptible():
            model = prepare.prepare(settings, source, image_ref, scratch)
            inputs.decide_header(bool(model.facts.get("csv_header")))
            print(f"  {inputs.header_note()}", flush=True)
            staged = stage(inputs, scratch / "input")
            (scratch / "containers").mkdir()
            session = local_session(settings, scratch / "containers", kind="transform")
            session.config = {"local": {**session.config["local"], "serving_port": port}}
            sagemaker()
            from sagemaker.model import Model

            started = time.monotonic()
            with local_mode.as_sagemaker(model.folder):
                transformer = Model(
                    image_uri=image_ref, model_data=f"file://{model.folder}", role=LOCAL_ROLE,
                    sagemaker_session=session, env=_model_env(inputs, model),
                ).transformer(
                    instance_count=1, instance_type="local", strategy="MultiRecord", assemble_with="Line",
                    output_path=f"file://{scratch / 'predictions'}", accept=inputs.content_type, max_payload=MAX_PAYLOAD_MB,
                )  # fmt: skip
                # logs=False: the SDK would read the job's logs from CloudWatch; local mode's container prints them.
                transformer.transform(
                    f"file://{staged}", content_type=inputs.content_type, split_type="Line", wait=True, logs=False
                )
            output.mkdir(parents=True, exist_ok=True)
            counts = join(inputs, scratch / "predictions", output)
    finally:
        local_containers.remove(scratch / "containers")  # the SDK stops them but leaves them behind
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.monotonic() - started
    record = {
        "model": source.archive,
        "image": image_ref,
        "handler": model.facts,
        "header": inputs.columns,
        "rows": counts,
        "seconds": round(seconds, 2),
        "target": "local",
    }
    (output / "transform.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"transformed {sum(counts.values())} rows in {seconds:.1f} s, one answer each: {output}", flush=True)
    return counts


def _count_lines(s3, uri: str) -> dict[str, int]:
    """Non-blank lines of each object under an s3:// prefix (or of one object), by its name."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    counts = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"]
            counts[entry["Key"].rsplit("/", 1)[-1]] = sum(1 for line in body.iter_lines() if line.strip())
    return counts


def run_sagemaker(
    settings: Settings, source: ModelSource, inputs: TransformInput, output: str | None, instance_count: int
) -> str:
    from gs_ds_env import image
    from gs_ds_env.serve import endpoint

    boto_session = aws.session(settings)
    account = aws.account_id(boto_session)
    built = image.push(settings.replace(theme=source.theme, py=source.py), account)
    s3 = aws.client(boto_session, "s3")
    name = source.resource_name(settings, "tr")
    settings.working_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="transform-", dir=settings.working_dir) as scratch:
        model = prepare.prepare(settings, source, built.local_ref, Path(scratch))
        inputs.decide_header(bool(model.facts.get("csv_header")))
        print(f"  {inputs.header_note()}", flush=True)
        sizing = endpoint.size(model.peak_mb, "auto", batch=True)
        print(f"instance: {sizing.instance_type} x{instance_count} ({sizing.evidence})", flush=True)
        model_data = endpoint.model_data(settings, s3, source, model, Path(scratch))
        data, expected = _upload_input(settings, s3, inputs, name, Path(scratch) / "input")
    output = output or s3_data.uri(settings, "transform-output", name)
    from gs_ds_env.sdk import SDK_CONFIG

    sagemaker()
    from sagemaker.model import Model
    from sagemaker.session import Session

    session = Session(boto_session=boto_session, sagemaker_config=SDK_CONFIG)
    model_object = Model(
        image_uri=built.uri, model_data=model_data, role=settings.sagemaker_role_arn, sagemaker_session=session, name=name,
        env=_model_env(inputs, model),
    )  # fmt: skip
    client = aws.client(boto_session, "sagemaker")
    transformer = model_object.transformer(
        instance_count=instance_count, instance_type=sizing.instance_type, strategy="MultiRecord", assemble_with="Line",
        output_path=output, accept=inputs.content_type, max_payload=MAX_PAYLOAD_MB, tags=endpoint.tags(settings, source),
    )  # fmt: skip
    try:
        with interruptible():
            transformer.transform(
                data,
                content_type=inputs.content_type,
                split_type="Line",
                join_source="Input",
                job_name=name,
                wait=False,
            )
            status = _wait(client, name)
    except KeyboardInterrupt:
        print(f"interrupted: stopping transform job {name}", flush=True)
        client.stop_transform_job(TransformJobName=name)
        raise
    finally:
        client.delete_model(ModelName=name)
    _check_every_row_answered(s3, name, status, output, expected)
    return output


def _upload_input(settings: Settings, s3, inputs: TransformInput, name: str, staging: Path) -> tuple[str, dict]:
    """The input in S3 (local files staged and uploaded under transform-input/<name>/) and the rows each file
    holds, counted here (or, for an s3:// input, counted there)."""
    if inputs.s3_uri:
        return inputs.s3_uri, _count_lines(s3, inputs.s3_uri)
    expected: dict[str, int] = {}
    staged = stage(inputs, staging)
    for item in inputs.files:
        expected[item.path.name] = len(item.rows(bool(inputs.header)))
        s3.upload_file(
            str(staged / item.path.name),
            settings.s3_bucket,
            s3_data.key(settings, "transform-input", name, item.path.name),
            ExtraArgs={"ServerSideEncryption": s3_data.ENCRYPTION},
        )
    return s3_data.uri(settings, "transform-input", name) + "/", expected


def _check_every_row_answered(s3, name: str, status: str, output: str, expected: dict[str, int]) -> None:
    written = _count_lines(s3, output.rstrip("/") + "/")
    if not written:
        raise ServeError(
            f"transform job {name} is {status} but wrote nothing under {output}: see its CloudWatch log (/aws/sagemaker/TransformJobs)"
        )
    short = {f"{file}.out": rows for file, rows in expected.items() if written.get(f"{file}.out") != rows}
    if short:
        listed = ", ".join(f"{file}: {written.get(file, 0)} answers for {rows} rows" for file, rows in short.items())
        raise ServeError(f"transform job {name} {status} but did not answer every row ({listed}): see its log")
    print(f"transform job {name} {status}: {output} ({sum(expected.values())} rows, one answer each)", flush=True)


def _wait(client, name: str) -> str:
    while True:
        described = client.describe_transform_job(TransformJobName=name)
        status = described["TransformJobStatus"]
        if status == "Completed":
            return status
        if status in ("Failed", "Stopped"):
            raise ServeError(f"transform job {name} {status}: {described.get('FailureReason', '(no reason given)')}")
        time.sleep(POLL_SECONDS)
