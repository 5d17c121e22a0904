"""`inv endpoint.deploy|delete|list`: a trained model as a SageMaker endpoint, serverless by default.

deploy: the model is first loaded in its image here (`serve --check`: a model that cannot load costs nothing, and
its peak memory is the evidence for the endpoint's size), the image is pushed to ECR and the model put in S3 (both
content-addressed), then the SDK's Model(...).deploy(serverless_inference_config=... | instance_type=...) creates
the model, the endpoint config and the endpoint, each tagged, and this waits until InService. Ctrl-C while it is
being created deletes all three. delete: the endpoint, its config and its model(s); only what this project tagged.
list: this project's endpoints, their status, size and what they cost per hour.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from gs_ds_env import aws, image
from gs_ds_env.data import s3_data
from gs_ds_env.interrupts import interruptible
from gs_ds_env.serve import ServeError, prepare
from gs_ds_env.serve.model_source import ModelSource
from gs_ds_env.settings import ConfigError, Settings

RUN_TAG = "gs-ds-env:run"  # every resource deploy creates carries it; delete refuses what lacks it
SERVERLESS_MEMORY_MB = (1024, 2048, 3072, 4096, 5120, 6144)
SERVERLESS_MAX_CONCURRENCY = 5
HEADROOM = 2  # memory >= HEADROOM x the peak measured while loading the model (workers, request data)
# On-demand prices, us-east-1, from https://aws.amazon.com/sagemaker/pricing/ on PRICE_TABLE_DATE (real-time
# inference instances: USD per hour; serverless: USD per GB-second of compute, charged only while it answers).
PRICE_TABLE_DATE = "2025-06-01"
HOSTING_INSTANCES = [("ml.t2.medium", 4, 0.056), ("ml.m5.large", 8, 0.115), ("ml.m5.xlarge", 16, 0.23), ("ml.m5.2xlarge", 32, 0.461)]  # fmt: skip
SERVERLESS_USD_PER_GB_SECOND = 0.00002
POLL_SECONDS = 15


@dataclass(frozen=True)
class Sizing:
    serverless_memory_mb: int | None
    instance_type: str | None
    evidence: str

    @property
    def usd_per_hour(self) -> float:
        """Real-time: the instance, always; serverless: an hour of continuous answering (0 while idle)."""
        if self.serverless_memory_mb:
            return round(self.serverless_memory_mb / 1024 * SERVERLESS_USD_PER_GB_SECOND * 3600, 4)
        return next((price for name, _, price in HOSTING_INSTANCES if name == self.instance_type), float("nan"))

    def describe(self) -> str:
        if self.serverless_memory_mb:
            return (
                f"serverless, {self.serverless_memory_mb} MB, max concurrency {SERVERLESS_MAX_CONCURRENCY}: $0 while "
                f"idle, ${self.usd_per_hour}/h while answering ({PRICE_TABLE_DATE} us-east-1 table)"
            )
        return f"real-time {self.instance_type} x1: ${self.usd_per_hour}/h while it exists ({PRICE_TABLE_DATE} us-east-1 table)"


def known_instance_types(batch: bool = False) -> list[str]:
    """The instance types SageMaker accepts for an endpoint (or a transform job), from botocore's API model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return list(model.shape_for("TransformInstanceType" if batch else "ProductionVariantInstanceType").enum)


def check_instance_type(instance_type: str, batch: bool = False) -> None:
    """--instance-type before anything runs: serverless, auto, or a type SageMaker's API accepts for this use."""
    if instance_type in ("", "serverless", "auto"):
        if batch and instance_type == "serverless":
            raise ConfigError(
                "--instance-type serverless is for endpoints: a transform job runs on instances (auto or ml.<type>)"
            )
        return
    known = known_instance_types(batch)
    if instance_type not in known:
        import difflib

        close = difflib.get_close_matches(instance_type, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(
            f"--instance-type {instance_type!r} is not an instance type SageMaker offers for "
            f"{'batch transform' if batch else 'endpoints'}{hint}: use serverless (default), auto or e.g. ml.m5.large"
        )


def size(peak_mb: float, instance_type: str, batch: bool = False) -> Sizing:
    """The endpoint's size from the model's measured peak memory: serverless (default) the smallest memory size
    >= HEADROOM x peak; `auto` the smallest real-time instance with that much memory; else the type given."""
    need_mb = HEADROOM * peak_mb
    measured = f"peak memory {peak_mb:.0f} MB loading the model in its image (serve --check); need >= {HEADROOM} x = {need_mb:.0f} MB"
    if instance_type in ("", "serverless"):
        memory = next((m for m in SERVERLESS_MEMORY_MB if m >= need_mb), None)
        if memory is None:
            raise ConfigError(f"{measured}: more than serverless allows (6144 MB): use --instance-type auto")
        return Sizing(memory, None, f"{measured} -> {memory} MB, the smallest serverless size above it")
    if instance_type == "auto":
        # Batch transform takes no burstable (t2) instances.
        for name, gib, _ in [i for i in HOSTING_INSTANCES if not (batch and i[0].startswith("ml.t"))]:
            if gib * 1024 >= need_mb:
                return Sizing(None, name, f"{measured} -> {name} ({gib} GiB), the smallest listed instance above it")
        raise ConfigError(f"{measured}: more than the listed instances: pass --instance-type ml.<type>")
    check_instance_type(instance_type, batch)
    return Sizing(None, instance_type, f"{measured}; {instance_type} as given")


def tags(settings: Settings, source: ModelSource) -> list[dict[str, str]]:
    run = source.run.job_name if source.run else "model-data"
    return [{"Key": k, "Value": v} for k, v in {**settings.tags, RUN_TAG: run}.items()]


def model_data(settings: Settings, s3, source: ModelSource, model: prepare.PreparedModel, scratch: Path) -> str:
    """The model archive SageMaker reads: the prepared folder repacked (its code added, as the SDK repacks it) and
    sent once per content, else the original as it is (an s3:// URI) or sent once per content."""
    if model.repacked:
        return s3_data.upload_model(settings, s3, prepare.archive(model, scratch / "model.tar.gz"))
    if source.archive.startswith("s3://"):
        return source.archive
    return s3_data.upload_model(settings, s3, Path(source.archive))


def plan(settings: Settings, source: ModelSource, instance_type: str) -> list[str]:
    name = source.resource_name(settings)
    where = (
        "as it is"
        if source.archive.startswith("s3://")
        else f"to {s3_data.uri(settings, 'models', '<sha256>', 'model.tar.gz')} (once per content)"
    )
    if instance_type in ("", "serverless"):
        size_line = f"serverless: the smallest of {', '.join(map(str, SERVERLESS_MEMORY_MB))} MB >= {HEADROOM} x peak"
    elif instance_type == "auto":
        size_line = f"real-time: the smallest of {', '.join(n for n, _, _ in HOSTING_INSTANCES)} with {HEADROOM} x peak"
    else:
        size_line = f"real-time {instance_type} x1, as given"
    code = f"{source.code.origin} when it defines a handler, " if source.code else ""
    return [
        f"endpoint {name} for {source.label} ({source.theme}, Python {source.py}):",
        f"  handler: the model's own code/, else {code}else the framework defaults (serve --check says which)",
        "  load the model in its image here (serve --check): its peak memory sizes the endpoint",
        f"  size: {size_line}",
        f"  push the theme image to ECR repository {settings.ecr_repository} (skipped when the content tag is there)",
        f"  model data: {source.archive} {where}; repacked with its code/ when the handler comes from a script",
        f"  sagemaker:CreateModel {name} (image, model data, role {settings.sagemaker_role_arn})",
        f"  sagemaker:CreateEndpointConfig {name}, sagemaker:CreateEndpoint {name}; tags {RUN_TAG} and TAGS",
        f"  wait until InService; remove with: inv endpoint.delete {name}",
    ]


def _boto(settings: Settings):
    return aws.session(settings)


def deploy(settings: Settings, source: ModelSource, instance_type: str) -> str:
    boto_session = _boto(settings)
    account = aws.account_id(boto_session)
    # The theme image in ECR under its content tag (nothing is sent when the registry has it, e.g. after training).
    built = image.push(settings.replace(theme=source.theme, py=source.py), account)
    image_uri = built.uri
    settings.working_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="endpoint-check-", dir=settings.working_dir) as scratch:
        model = prepare.prepare(settings, source, built.local_ref, Path(scratch))
        sizing = size(model.peak_mb, instance_type)
        print(f"size: {sizing.describe()}\n  evidence: {sizing.evidence}", flush=True)
        data = model_data(settings, aws.client(boto_session, "s3"), source, model, Path(scratch))
    name = source.resource_name(settings)
    from gs_ds_env.sdk import SDK_CONFIG, sagemaker

    sagemaker()
    from sagemaker.model import Model
    from sagemaker.serverless import ServerlessInferenceConfig
    from sagemaker.session import Session

    session = Session(boto_session=boto_session, sagemaker_config=SDK_CONFIG)
    options: dict = {"endpoint_name": name, "tags": tags(settings, source), "wait": False}
    if sizing.serverless_memory_mb:
        options["serverless_inference_config"] = ServerlessInferenceConfig(
            memory_size_in_mb=sizing.serverless_memory_mb, max_concurrency=SERVERLESS_MAX_CONCURRENCY
        )
    else:
        options.update(initial_instance_count=1, instance_type=sizing.instance_type)
    model_object = Model(
        image_uri=image_uri, model_data=data, role=settings.sagemaker_role_arn, sagemaker_session=session, name=name,
        env=model.environment or None,
    )  # fmt: skip
    client = aws.client(boto_session, "sagemaker")
    try:
        with interruptible():
            model_object.deploy(**options)
            _wait_in_service(client, name)
    except KeyboardInterrupt:
        print(f"interrupted: deleting endpoint {name}, its config and model (nothing left to pay for)", flush=True)
        _delete(client, name, [name])
        raise
    except (ClientError, BotoCoreError) as error:
        raise aws.explain(error, f"creating endpoint {name}") from None
    print(f"endpoint {name} is InService ({sizing.describe()})", flush=True)
    print(f"predict: inv predict --endpoint {name} --input FILE; remove: inv endpoint.delete {name}")
    return name


def _wait_in_service(client, name: str) -> None:
    last = None
    while True:
        described = client.describe_endpoint(EndpointName=name)
        status = described["EndpointStatus"]
        if status != last:
            print(f"endpoint {name}: {status}", flush=True)
            last = status
        if status == "InService":
            return
        if status in ("Failed", "OutOfService", "Deleting"):
            raise ServeError(
                f"endpoint {name} is {status}: {described.get('FailureReason', '(no reason given)')}; "
                f"remove it with `inv endpoint.delete {name}`"
            )
        time.sleep(POLL_SECONDS)


def _ours(client, arn: str) -> bool:
    found = client.list_tags(ResourceArn=arn).get("Tags", [])
    return any(tag["Key"] == RUN_TAG for tag in found)


def resources(client, name: str) -> tuple[str, list[str]]:
    """The endpoint's config and model names."""
    described = client.describe_endpoint(EndpointName=name)
    config_name = described["EndpointConfigName"]
    config = client.describe_endpoint_config(EndpointConfigName=config_name)
    return config_name, [variant["ModelName"] for variant in config["ProductionVariants"]]


def delete_plan(settings: Settings, name: str) -> list[str]:
    client = aws.client(_boto(settings), "sagemaker")
    try:
        described = client.describe_endpoint(EndpointName=name)
    except ClientError as error:
        if aws.error_code(error) == "ValidationException":
            raise ConfigError(
                f"no endpoint {name!r} in {settings.aws_region}: `inv endpoint.list` shows this project's"
            ) from None
        raise aws.explain(error, f"reading endpoint {name}") from None
    if not _ours(client, described["EndpointArn"]):
        raise ConfigError(
            f"endpoint {name} has no {RUN_TAG} tag: it was not created by this project; delete it in the console if you mean to"
        )
    config_name, models = resources(client, name)
    return [f"delete endpoint {name}", f"delete endpoint config {config_name}", *(f"delete model {m}" for m in models)]


def _delete(client, name: str, models: list[str], config_name: str | None = None) -> None:
    with contextlib.suppress(ClientError):
        client.delete_endpoint(EndpointName=name)
    with contextlib.suppress(ClientError):
        client.delete_endpoint_config(EndpointConfigName=config_name or name)
    for model in models:
        with contextlib.suppress(ClientError):
            client.delete_model(ModelName=model)


def delete(settings: Settings, name: str) -> None:
    client = aws.client(_boto(settings), "sagemaker")
    config_name, models = resources(client, name)
    client.delete_endpoint(EndpointName=name)
    client.delete_endpoint_config(EndpointConfigName=config_name)
    for model in models:
        client.delete_model(ModelName=model)
    print(f"deleted endpoint {name}, endpoint config {config_name}, model {', '.join(models)}", flush=True)


def listing(settings: Settings) -> list[dict]:
    """This project's endpoints (name prefix BASE_JOB_NAME and the RUN_TAG): status, size, cost per hour."""
    client = aws.client(_boto(settings), "sagemaker")
    rows = []
    paginator = client.get_paginator("list_endpoints")
    for page in paginator.paginate(NameContains=settings.base_job_name):
        for summary in page["Endpoints"]:
            if not _ours(client, summary["EndpointArn"]):
                continue
            config = client.describe_endpoint_config(
                EndpointConfigName=client.describe_endpoint(EndpointName=summary["EndpointName"])["EndpointConfigName"]
            )
            variant = config["ProductionVariants"][0]
            serverless = variant.get("ServerlessConfig")
            sizing = (
                Sizing(serverless["MemorySizeInMB"], None, "")
                if serverless
                else Sizing(None, variant.get("InstanceType"), "")
            )
            count = 1 if serverless else int(variant.get("InitialInstanceCount", 1))
            rows.append(
                {
                    "name": summary["EndpointName"],
                    "status": summary["EndpointStatus"],
                    "size": f"serverless {serverless['MemorySizeInMB']} MB"
                    if serverless
                    else f"{sizing.instance_type} x{count}",
                    "usd_per_hour": "0 idle / " + str(sizing.usd_per_hour) + " answering"
                    if serverless
                    else str(round(sizing.usd_per_hour * count, 4)),
                    "created": summary["CreationTime"].isoformat(timespec="seconds")
                    if hasattr(summary["CreationTime"], "isoformat")
                    else str(summary["CreationTime"]),
                }
            )
    return rows


def table(rows: list[dict]) -> str:
    if not rows:
        return "no endpoints of this project (none left running)"
    headers = ["name", "status", "size", "usd_per_hour", "created"]
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths, strict=True)) for r in rows]
    return "\n".join(lines)
