"""`inv transform`: batch predictions over files, with the SDK's Transformer, on either target.

The input (a .csv or .jsonl file, or a folder of them) is split by line and sent in mini-batches (MultiRecord, at
most 6 MB each) to the image's `serve`; each output row is joined to its input row, so rows keep their ids. A CSV's
header is taken off before sending (batch transform splits a file by line: only one mini-batch would hold it) and
given to the model as GS_CSV_COLUMNS; the joined output has it back with a `prediction` column.

local: Transformer(instance_type="local") in SageMaker local mode; local mode does not join (DataProcessing), so the
join is done here, row by row, after checking that every input row has exactly one prediction.
sagemaker: the image pushed, the model and the input in S3, CreateTransformJob with DataProcessing JoinSource=Input,
--instance-count N instances (files are spread across them: give a folder of several files for N > 1).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from gs_ds_env import aws
from gs_ds_env.data import s3_data
from gs_ds_env.image.app import ensure_free
from gs_ds_env.interrupts import interruptible
from gs_ds_env.job import local_containers
from gs_ds_env.job.local_job import local_session
from gs_ds_env.sdk import sagemaker
from gs_ds_env.serving import ServeError, local, model_source
from gs_ds_env.serving.model_source import ModelSource
from gs_ds_env.settings import ConfigError, Settings

KINDS = {".csv": "text/csv", ".jsonl": "application/jsonlines", ".jsonlines": "application/jsonlines"}
COLUMNS_VARIABLE = "GS_CSV_COLUMNS"
MAX_PAYLOAD_MB = 6
POLL_SECONDS = 15


@dataclass
class TransformInput:
    files: list[Path]  # local input files (empty for an s3:// input)
    content_type: str
    columns: list[str] | None  # a CSV's header, sent as GS_CSV_COLUMNS
    s3_uri: str | None = None


def read_input(path: str) -> TransformInput:
    if path.startswith("s3://"):
        kind = next((k for suffix, k in KINDS.items() if path.endswith(suffix)), "text/csv")
        return TransformInput([], kind, None, path)
    source = Path(path).expanduser()
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix in KINDS) if source.is_dir() else [source]
    if not source.exists() or not files:
        raise ConfigError(f"--input {path}: give a .csv or .jsonl file, a folder of them, or an s3:// URI")
    kinds = {KINDS.get(p.suffix) for p in files}
    if None in kinds or len(kinds) != 1:
        raise ConfigError(
            f"--input {path}: one kind of file per transform, .csv or .jsonl ({', '.join(p.name for p in files)})"
        )
    kind = kinds.pop()
    columns = None
    if kind == "text/csv":
        headers = {tuple(next(csv.reader(io.StringIO(p.read_text().split("\n", 1)[0])), [])) for p in files}
        if len(headers) != 1:
            raise ConfigError(f"--input {path}: the CSV files have different headers; transform them one at a time")
        columns = list(headers.pop())
    return TransformInput(files, kind, columns)


def _rows(path: Path, kind: str) -> list[str]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return lines[1:] if kind == "text/csv" else lines


def stage(inputs: TransformInput, folder: Path) -> Path:
    """The rows to send, without a CSV's header, one file per input file."""
    folder.mkdir(parents=True)
    for path in inputs.files:
        (folder / path.name).write_text("\n".join(_rows(path, inputs.content_type)) + "\n")
    return folder


def join(inputs: TransformInput, predictions_dir: Path, output: Path) -> dict[str, int]:
    """Each input file with its predictions, row by row; every row must have exactly one."""
    counts = {}
    for path in inputs.files:
        rows = _rows(path, inputs.content_type)
        produced = predictions_dir / f"{path.name}.out"
        answers = [line for line in produced.read_text().splitlines() if line.strip()] if produced.is_file() else []
        if len(answers) != len(rows):
            first = next((a for a in answers if not _is_prediction(a, inputs.content_type)), answers[:1] or ["nothing"])
            raise ServeError(
                f"transform of {path.name}: {len(answers)} answer line(s) for {len(rows)} rows; the server said: {first[:300]}"
            )
        with (output / path.name).open("w") as handle:
            if inputs.content_type == "text/csv":
                handle.write(",".join([*inputs.columns, "prediction"]) + "\n")
                handle.writelines(f"{row},{answer}\n" for row, answer in zip(rows, answers, strict=True))
            else:
                for row, answer in zip(rows, answers, strict=True):
                    handle.write(json.dumps({**json.loads(row), "SageMakerOutput": json.loads(answer)}) + "\n")
        counts[path.name] = len(rows)
    return counts


def _is_prediction(line: str, kind: str) -> bool:
    try:
        json.loads(line) if kind != "text/csv" else [float(v) for v in line.split(",")]
        return True
    except ValueError:
        return False


def default_output(settings: Settings, source: ModelSource) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if source.run_dir:
        return source.run_dir / f"transform-{stamp}"
    raise ConfigError(
        "--output DIR is needed with --model-data (from a run, the default is runs/<job>/transform-<time>/)"
    )


def plan(
    settings: Settings, source: ModelSource, inputs: TransformInput, output: str, instance_count: int
) -> list[str]:
    sent = inputs.s3_uri or ", ".join(p.name for p in inputs.files)
    lines = [
        f"transform {sent} ({inputs.content_type}) with {source.label}",
        f"  split by line, mini-batches of at most {MAX_PAYLOAD_MB} MB (MultiRecord); "
        + (f"the CSV header goes to the model as {COLUMNS_VARIABLE}" if inputs.columns else "no header"),
    ]
    if settings.target == "local":
        lines += [
            "  SageMaker local mode: Transformer(instance_type='local') on the theme image (serve), then each "
            "prediction joined to its input row here",
            f"  output: {output}/<file> (input columns + prediction)",
        ]
    else:
        lines += [
            f"  push the image to ECR {settings.ecr_repository}; model and input to {s3_data.uri(settings)}/",
            f"  sagemaker:CreateModel, sagemaker:CreateTransformJob ({instance_count} instance(s), JoinSource=Input, tags)",
            f"  output: {output}; the model is deleted when the job ends",
        ]
    return lines


def run_local(settings: Settings, source: ModelSource, inputs: TransformInput, output: Path) -> dict[str, int]:
    if inputs.s3_uri:
        raise ConfigError("TARGET=local transforms local files: download the s3:// input, or set TARGET=sagemaker")
    if output.exists() and any(output.iterdir()):
        raise ConfigError(f"--output {output} is not empty: choose a new folder (nothing is overwritten)")
    ensure_free(settings.serve_port)  # local mode serves the model there while it transforms (SERVE_PORT)
    image_ref = local.serving_image(settings, source)
    settings.working_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="transform-", dir=settings.working_dir))
    try:
        with interruptible():
            model_dir = model_source.extract(source, settings, scratch / "model")
            print(local.check_model(image_ref, model_dir), flush=True)
            staged = stage(inputs, scratch / "input")
            (scratch / "containers").mkdir()
            session = local_session(settings, scratch / "containers")
            session.config = {"local": {**session.config["local"], "serving_port": settings.serve_port}}
            sagemaker()
            from sagemaker.model import Model

            started = time.monotonic()
            transformer = Model(
                image_uri=image_ref, model_data=f"file://{model_dir}", role=local.LOCAL_ROLE, sagemaker_session=session,
                env={COLUMNS_VARIABLE: ",".join(inputs.columns)} if inputs.columns else None,
            ).transformer(
                instance_count=1, instance_type="local", strategy="MultiRecord", assemble_with="Line",
                output_path=f"file://{scratch / 'predictions'}", accept=inputs.content_type, max_payload=MAX_PAYLOAD_MB,
            )  # fmt: skip
            # logs=False: the SDK would read the job's logs from CloudWatch; local mode's container prints them here.
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
        "rows": counts,
        "seconds": round(seconds, 2),
        "target": "local",
    }
    (output / "transform.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"transformed {sum(counts.values())} rows in {seconds:.1f} s: {output}", flush=True)
    return counts


def run_sagemaker(
    settings: Settings, source: ModelSource, inputs: TransformInput, output: str | None, instance_count: int
) -> str:
    from gs_ds_env import image
    from gs_ds_env.serving import endpoint

    boto_session = aws.session(settings)
    account = aws.account_id(boto_session)
    built = image.push(settings.replace(theme=source.theme, py=source.py), account)
    sizing = endpoint.size(endpoint.measure(settings, source, built.local_ref), "auto", batch=True)
    print(f"instance: {sizing.instance_type} x{instance_count} ({sizing.evidence})", flush=True)
    s3 = aws.client(boto_session, "s3")
    model_data = (
        source.archive
        if source.archive.startswith("s3://")
        else s3_data.upload_model(settings, s3, Path(source.archive))
    )
    name = source.resource_name(settings, "tr")
    data = inputs.s3_uri
    if not data:
        settings.working_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=settings.working_dir) as scratch:
            staged = stage(inputs, Path(scratch) / "input")
            for path in sorted(staged.iterdir()):
                s3.upload_file(
                    str(path),
                    settings.s3_bucket,
                    s3_data.key(settings, "transform-input", name, path.name),
                    ExtraArgs={"ServerSideEncryption": s3_data.ENCRYPTION},
                )
        data = s3_data.uri(settings, "transform-input", name) + "/"
    output = output or s3_data.uri(settings, "transform-output", name)
    from gs_ds_env.sdk import SDK_CONFIG

    sagemaker()
    from sagemaker.model import Model
    from sagemaker.session import Session

    session = Session(boto_session=boto_session, sagemaker_config=SDK_CONFIG)
    model = Model(
        image_uri=built.uri, model_data=model_data, role=settings.sagemaker_role_arn, sagemaker_session=session, name=name,
        env={COLUMNS_VARIABLE: ",".join(inputs.columns)} if inputs.columns else None,
    )  # fmt: skip
    client = aws.client(boto_session, "sagemaker")
    transformer = model.transformer(
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
    bucket, _, prefix = output.removeprefix("s3://").partition("/")
    written = s3.list_objects_v2(Bucket=bucket, Prefix=prefix.rstrip("/") + "/").get("KeyCount", 0)
    if not written:
        raise ServeError(
            f"transform job {name} is {status} but wrote nothing under {output}: see its CloudWatch log (/aws/sagemaker/TransformJobs)"
        )
    print(f"transform job {name} {status}: {output}", flush=True)
    return output


def _wait(client, name: str) -> str:
    while True:
        described = client.describe_transform_job(TransformJobName=name)
        status = described["TransformJobStatus"]
        if status == "Completed":
            return status
        if status in ("Failed", "Stopped"):
            raise ServeError(f"transform job {name} {status}: {described.get('FailureReason', '(no reason given)')}")
        time.sleep(POLL_SECONDS)
