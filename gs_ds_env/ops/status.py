"""`inv status`: everything this project started that is still running or billing, here and on AWS, one row each
with its age, what it costs per hour where it costs, and the command that stops it.

Here: the containers labelled with this checkout (local training and processing jobs, pipelines, endpoints,
transforms, labs, apps), those a killed command left (ops/leftovers.py: `inv clean --orphans`) marked so. On AWS
(TARGET=sagemaker, or --aws): training, processing and transform jobs in progress and pipeline executions running
(named <BASE_JOB_NAME>... or, for a pipeline's steps, pipelines-...), this project's endpoints (their $/h), pipeline
schedules, Studio images, and the notebook instance this runs on (its type, $/h, and what the idle watcher last
said). The exit code is 1 when something has run longer than STATUS_MAX_HOURS (for cron)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from gs_ds_env.settings import Settings

METADATA = Path("/opt/ml/metadata/resource-metadata.json")  # present on a SageMaker notebook instance
IDLE_LOG = Path("/home/ec2-user/SageMaker/.myenv/idle-stop.log")  # bin/gs-env-idle-stop.py's, from the lifecycle
# On-demand notebook instance prices, USD per hour, us-east-1, https://aws.amazon.com/sagemaker/pricing/ (2025-06-01).
NOTEBOOK_PRICES = {"ml.t3.medium": 0.05, "ml.t3.large": 0.1, "ml.t3.xlarge": 0.2, "ml.m5.xlarge": 0.23, "ml.m5.2xlarge": 0.461, "ml.c5.xlarge": 0.204, "ml.g4dn.xlarge": 0.736}  # fmt: skip


@dataclass
class Item:
    where: str  # here | sagemaker | notebook
    kind: str
    name: str
    state: str
    age_hours: float | None
    usd_per_hour: float | None
    stop: str  # the command that stops or removes it
    orphaned: bool = False
    running: bool = True  # it runs (and may bill) now; an exited container, a schedule, an image do not


def _hours_since(moment) -> float | None:
    """Hours since a datetime, an epoch, or an ISO 8601 text (Docker's has nanoseconds: cut to microseconds)."""
    if moment in (None, ""):
        return None
    if isinstance(moment, (int, float)):
        return (time.time() - moment) / 3600
    if isinstance(moment, str):
        text = re.sub(r"(\.\d{6})\d+", r"\1", moment.replace("Z", "+00:00"))
        moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - moment).total_seconds() / 3600


# ---- here --------------------------------------------------------------------------------------------------------
def local_items(settings: Settings) -> list[Item]:
    from gs_ds_env.ops import leftovers

    client = leftovers._docker()
    if client is None:
        return []
    orphans = {c.id for leftover in leftovers.find(settings) for c in leftover.containers}
    checkout = str(settings.repo_root.resolve())
    items = []
    for container in client.containers.list(
        all=True, filters={"label": f"{leftovers.LABEL_CHECKOUT}={checkout}"}, ignore_removed=True
    ):
        kind = container.labels.get(leftovers.LABEL_KIND, "container")
        owner = container.labels.get(leftovers.LABEL_OWNER, "")
        orphaned = container.id in orphans or (bool(owner) and not leftovers.alive(owner))
        if orphaned:
            stop = "inv clean --orphans"
        elif container.status == "running" and owner:
            stop = f"Ctrl-C in the terminal of pid {owner.split(':')[0]} (or docker rm -f {container.name})"
        else:
            stop = f"docker rm -f {container.name}"
        ports = ", ".join(f"127.0.0.1:{p}" for p in leftovers._ports(container))
        items.append(
            Item("here", kind, container.name, container.status + (f" on {ports}" if ports else ""),
                 _hours_since(container.attrs.get("Created")), None, stop, orphaned, container.status == "running")
        )  # fmt: skip
    return items


# ---- on AWS ------------------------------------------------------------------------------------------------------
def _mine(settings: Settings, name: str) -> bool:
    return name.startswith((settings.base_job_name, "pipelines-"))


def _price(instance_type: str | None, count: int = 1) -> float | None:
    from gs_ds_env.aws import instance

    price = instance.PRICE_TABLE.get(instance_type or "")
    return round(price * count, 4) if price is not None else None


@dataclass(frozen=True)
class _JobKind:
    """One kind of SageMaker job as its API names it (Training, Processing, Transform): how to list those in progress,
    where its instances are said (None: not priced), and the CLI that stops one."""

    label: str
    api: str  # list_<api>s, <Api>Summaries, <Api>Name, describe_<api>, stop-<api>
    resources: Callable[[dict], dict] | None
    status: Callable[[dict], str] = lambda described: "InProgress"

    def items(self, settings: Settings, sm) -> list[Item]:
        camel = "".join(part.title() for part in self.api.split("_"))
        items = []
        for page in sm.get_paginator(f"list_{self.api}s").paginate(StatusEquals="InProgress"):
            for job in page[f"{camel}Summaries"]:
                name = job[f"{camel}Name"]
                if not _mine(settings, name):
                    continue
                described = getattr(sm, f"describe_{self.api}")(**{f"{camel}Name": name}) if self.resources else {}
                resources = self.resources(described) if self.resources else {}
                items.append(Item(
                    "sagemaker", self.label, name, self.status(described), _hours_since(job.get("CreationTime")),
                    _price(resources.get("InstanceType"), resources.get("InstanceCount", 1)) if self.resources else None,
                    f"aws sagemaker stop-{self.api.replace('_', '-')} --{self.api.replace('_', '-')}-name {name}",
                ))  # fmt: skip
        return items


_JOB_KINDS = (
    _JobKind(
        "training job", "training_job", lambda described: described.get("ResourceConfig", {}),
        lambda described: described.get("SecondaryStatus", "InProgress"),
    ),
    _JobKind("processing job", "processing_job", lambda d: d.get("ProcessingResources", {}).get("ClusterConfig", {})),
    _JobKind("transform job", "transform_job", None),
)  # fmt: skip


def _endpoints(settings: Settings, sm) -> list[Item]:
    from gs_ds_env.serve import endpoint

    items = []
    for row in endpoint.listing(settings):
        usd = row["usd_per_hour"]
        items.append(Item(
            "sagemaker", "endpoint", row["name"], f"{row['status']} ({row['size']})", _hours_since(row["created"]),
            None if " answering" in str(usd) else float(usd), f"inv endpoint.delete {row['name']}",
        ))  # fmt: skip
    return items


def _pipeline_executions(settings: Settings, sm) -> list[Item]:
    items = []
    for page in sm.get_paginator("list_pipelines").paginate(PipelineNamePrefix=settings.base_job_name):
        for pipeline in page["PipelineSummaries"]:
            name = pipeline["PipelineName"]
            for execution in sm.list_pipeline_executions(PipelineName=name).get("PipelineExecutionSummaries", []):
                if execution.get("PipelineExecutionStatus") == "Executing":
                    items.append(Item(
                        "sagemaker", "pipeline execution", name, "Executing", _hours_since(execution.get("StartTime")),
                        None, f"aws sagemaker stop-pipeline-execution --pipeline-execution-arn "
                              f"{execution['PipelineExecutionArn']}",
                    ))  # fmt: skip
    return items


def _schedules(settings: Settings, scheduler) -> list[Item]:
    items = []
    for page in scheduler.get_paginator("list_schedules").paginate(NamePrefix=settings.base_job_name):
        for schedule in page["Schedules"]:
            pipeline = schedule["Name"].removesuffix("-schedule").removeprefix(settings.base_job_name + "-")
            items.append(Item(
                "sagemaker", "pipeline schedule", schedule["Name"], schedule.get("State", ""),
                _hours_since(schedule.get("CreationDate")), None, f"inv pipeline.schedule {pipeline} --off",
                running=False,
            ))  # fmt: skip
    return items


def _studio_images(settings: Settings, sm) -> list[Item]:
    items = []
    for page in sm.get_paginator("list_images").paginate(NameContains=settings.base_job_name):
        for image in page["Images"]:
            if image["ImageName"].startswith(settings.base_job_name):
                items.append(Item(
                    "sagemaker", "studio image", image["ImageName"], image.get("ImageStatus", ""),
                    _hours_since(image.get("CreationTime")), None, "inv studio-image --delete", running=False,
                ))  # fmt: skip
    return items


def aws_items(settings: Settings, boto_session) -> tuple[list[Item], list[str]]:
    """Jobs in progress, endpoints, pipeline executions and schedules, Studio images: this project's. A list that
    cannot be read is a note (what, and why), never the end of the others."""
    from gs_ds_env import aws

    sm = aws.client(boto_session, "sagemaker")
    sections = [
        *((f"{kind.label}s", kind.items, sm) for kind in _JOB_KINDS), ("endpoints", _endpoints, sm),
        ("pipeline executions", _pipeline_executions, sm),
        ("pipeline schedules", _schedules, aws.client(boto_session, "scheduler")),
        ("Studio images", _studio_images, sm),
    ]  # fmt: skip
    items, notes = [], []
    for what, lister, client in sections:
        try:
            items += lister(settings, client)
        except (ClientError, BotoCoreError) as error:
            notes.append(f"AWS {what}: not listed ({aws.explain(error, f'listing {what}')})")
    return items, notes


def notebook_item(boto_session, metadata: Path = METADATA, idle_log: Path = IDLE_LOG) -> Item | None:
    """The notebook instance this runs on (none elsewhere): its type, $/h, and what the idle watcher last said."""
    if not metadata.is_file():
        return None
    from gs_ds_env import aws

    name = json.loads(metadata.read_text()).get("ResourceName", "")
    described = aws.client(boto_session, "sagemaker").describe_notebook_instance(NotebookInstanceName=name)
    kind = described.get("InstanceType", "")
    said = "idle watcher: off (set IDLE_STOP_MINUTES in the lifecycle configuration)"
    if idle_log.is_file() and idle_log.read_text().strip():
        said = "idle watcher: " + idle_log.read_text().strip().splitlines()[-1].split("idle-stop: ", 1)[-1]
    return Item(
        "notebook", "notebook instance", name, f"{described.get('NotebookInstanceStatus', '')} ({kind}); {said}",
        _hours_since(described.get("LastModifiedTime")), NOTEBOOK_PRICES.get(kind),
        f"aws sagemaker stop-notebook-instance --notebook-instance-name {name}",
    )  # fmt: skip


# ---- all of it -----------------------------------------------------------------------------------------------------
def collect(settings: Settings, check_aws: bool, boto_session=None) -> tuple[list[Item], list[str]]:
    """The items, and the notes on what could not be looked at."""
    notes = []
    items = local_items(settings)
    if check_aws:
        from gs_ds_env import aws

        boto_session = boto_session or aws.session(settings)
        found, notes = aws_items(settings, boto_session)
        items += found
        try:
            notebook = notebook_item(boto_session)
        except (ClientError, BotoCoreError) as error:
            notes.append(f"AWS notebook instance: not read ({aws.explain(error, 'describing it')})")
            notebook = None
        if notebook:
            items.append(notebook)
    else:
        notes.append("AWS: not checked (TARGET=local): `inv status --aws` looks there too")
    return items, notes


def too_old(items: list[Item], max_hours: float) -> list[Item]:
    """What has been running longer than `max_hours` (the notebook instance itself is watched by its idle watcher)."""
    return [i for i in items if i.running and i.where != "notebook" and (i.age_hours or 0) > max_hours]


def table(items: list[Item], notes: list[str]) -> str:
    if not items:
        lines = ["nothing of this project is running or billing here" + ("" if notes else " or on AWS")]
    else:
        rows = [("where", "what", "name", "state", "age h", "USD/h", "stop it with")]
        for i in items:
            name = i.name + (" (orphaned)" if i.orphaned else "")
            age = "" if i.age_hours is None else f"{i.age_hours:.1f}"
            usd = "" if i.usd_per_hour is None else f"{i.usd_per_hour:.3f}"
            rows.append((i.where, i.kind, name, i.state, age, usd, i.stop))
        widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
        billed = sum(i.usd_per_hour or 0 for i in items)
        if billed:
            lines.append(f"billing now: about {billed:.3f} USD/h")
    return "\n".join(lines + notes)


def as_json(items: list[Item], notes: list[str]) -> str:
    return json.dumps({"items": [asdict(i) for i in items], "notes": notes}, indent=2, default=str)
