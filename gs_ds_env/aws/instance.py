"""`inv instance`: the smallest instance that works here for a training (or processing) job, with the evidence.

Evidence, in order: the types CreateTrainingJob (CreateProcessingJob) accepts (botocore's service model), the
account's Service Quotas "<type> for training (processing) job usage" in the region, and the hourly price (Price List
API, else the dated table below; a processing instance costs what the same training instance costs there).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gs_ds_env import aws
from gs_ds_env.settings import ConfigError, Settings

# On-demand SageMaker *training* prices, USD per instance-hour, us-east-1, as listed on
# https://aws.amazon.com/sagemaker/pricing/ when this table was written. Used only when the Price List API cannot
# be read (no pricing:GetProducts permission, offline); other regions usually cost a little more.
PRICE_TABLE_DATE = "2025-06-01"
PRICE_TABLE_REGION = "us-east-1"
PRICE_TABLE = {
    "ml.m5.large": 0.115,
    "ml.m5.xlarge": 0.23,
    "ml.m5.2xlarge": 0.461,
    "ml.m5.4xlarge": 0.922,
    "ml.m4.xlarge": 0.24,
    "ml.m4.2xlarge": 0.48,
    "ml.m6i.large": 0.115,
    "ml.m6i.xlarge": 0.23,
    "ml.m6i.2xlarge": 0.461,
    "ml.c5.xlarge": 0.204,
    "ml.c5.2xlarge": 0.408,
    "ml.c5.4xlarge": 0.816,
    "ml.c4.xlarge": 0.279,
    "ml.c4.2xlarge": 0.557,
    "ml.c6i.xlarge": 0.204,
    "ml.c6i.2xlarge": 0.408,
    "ml.r5.large": 0.151,
    "ml.r5.xlarge": 0.302,
    "ml.g4dn.xlarge": 0.736,
    "ml.g5.xlarge": 1.408,
    "ml.p3.2xlarge": 3.825,
}
# The training image is CPU-only (xgboost-cpu, scikit-learn): accelerators would cost more and add nothing.
ACCELERATED = re.compile(r"^ml\.(g\d|p\d|trn|inf)")
QUOTA_NAME = re.compile(r"^(ml\.[a-z0-9-]+\.[a-z0-9]+) for training job usage$")

if TYPE_CHECKING:
    import boto3


@dataclass(frozen=True)
class JobKind:
    """What differs between the jobs an instance is picked for: the API's list of types, the quota, the price."""

    name: str  # training | processing
    shape: str  # botocore's enum of the types the Create call accepts
    quota: re.Pattern
    usage: str  # the Price List's usagetype infix: USE1-Train:ml.m5.large
    create: str  # the API call that starts one


JOBS = {
    "training": JobKind("training", "TrainingInstanceType", QUOTA_NAME, "Train", "CreateTrainingJob"),
    "processing": JobKind(
        "processing",
        "ProcessingInstanceType",
        re.compile(r"^(ml\.[a-z0-9-]+\.[a-z0-9]+) for processing job usage$"),
        "Processing",
        "CreateProcessingJob",
    ),
}


@dataclass
class Row:
    instance_type: str
    quota: float | None  # None: the quota could not be read
    price: float | None
    price_source: str

    @property
    def usable(self) -> bool:
        return self.quota is None or self.quota > 0


@dataclass
class Choice:
    instance_type: str
    price: float | None
    reason: str
    rows: list[Row]
    quota_source: str
    warnings: list[str] = field(default_factory=list)
    job: str = "training"

    def table(self, limit: int = 10) -> str:
        shown = self.rows[:limit]
        if self.instance_type not in {row.instance_type for row in shown}:
            shown += [row for row in self.rows if row.instance_type == self.instance_type]
        lines = [
            f"| rank | instance type | quota ({self.job}) | USD/hour | price source | |",
            "|---|---|---|---|---|---|",
        ]
        for rank, row in enumerate(shown, 1):
            quota = "?" if row.quota is None else f"{row.quota:g}"
            price = "?" if row.price is None else f"{row.price:.3f}"
            mark = "**picked**" if row.instance_type == self.instance_type else ("" if row.usable else "quota 0")
            lines.append(f"| {rank} | {row.instance_type} | {quota} | {price} | {row.price_source} | {mark} |")
        return "\n".join(lines)

    def evidence(self) -> str:
        parts = [
            f"Picked `{self.instance_type}`: {self.reason}",
            "",
            self.table(),
            "",
            f"Accepted types: botocore's SageMaker model ({JOBS[self.job].shape}). Quotas: {self.quota_source}.",
        ]
        parts += [f"Warning: {warning}" for warning in self.warnings]
        return "\n".join(parts)


def accepted_types(boto_session: boto3.Session, job: str = "training") -> list[str]:
    model = boto_session._session.get_service_model("sagemaker")
    return sorted(model.shape_for(JOBS[job].shape).enum)


def cheapest_by_table(boto_session: boto3.Session, job: str = "training") -> str:
    """What a dry run shows for INSTANCE_TYPE=auto, without calling AWS: the cheapest CPU type the job's Create call
    accepts, by the price table (the run itself reads quotas and live prices)."""
    priced = [t for t in accepted_types(boto_session, job) if t in PRICE_TABLE and not ACCELERATED.match(t)]
    return min(priced, key=lambda t: (PRICE_TABLE[t], t))


def job_quotas(quota_client, job: str = "training") -> tuple[dict[str, float] | None, str]:
    """Applied quota values over AWS defaults; (None, why) when neither can be read."""
    quotas: dict[str, float] = {}
    notes = []
    for operation, label in (
        ("list_aws_default_service_quotas", "AWS defaults"),
        ("list_service_quotas", "applied values"),
    ):
        try:
            for page in quota_client.get_paginator(operation).paginate(ServiceCode="sagemaker"):
                for quota in page.get("Quotas", []):
                    match = JOBS[job].quota.match(quota.get("QuotaName", ""))
                    if match:
                        quotas[match.group(1)] = float(quota.get("Value", 0))
            notes.append(label)
        except (aws.ClientError, aws.BotoCoreError) as error:
            notes.append(f"{label} unreadable ({aws.error_code(error)})")
    if not quotas:
        return None, "Service Quotas could not be read (" + "; ".join(
            notes
        ) + f"): {job} quotas UNKNOWN, check them in the Service Quotas console"
    return quotas, "Service Quotas, sagemaker, " + " + ".join(notes)


def api_prices(pricing_client, region: str, job: str = "training") -> dict[str, float]:
    """On-demand prices of the job's instances for the region from the Price List API ({} when it cannot be read)."""
    prices: dict[str, float] = {}
    filters = [
        {"Type": "TERM_MATCH", "Field": field_name, "Value": value}
        for field_name, value in (("regionCode", region), ("productFamily", "ML Instance"))
    ]
    try:
        for page in pricing_client.get_paginator("get_products").paginate(
            ServiceCode="AmazonSageMaker", Filters=filters
        ):
            for item in page.get("PriceList", []):
                parsed = _price(json.loads(item) if isinstance(item, str) else item, JOBS[job].usage)
                if parsed:
                    prices[parsed[0]] = parsed[1]
    except (aws.ClientError, aws.BotoCoreError):
        return {}
    return prices


def _price(product: dict, infix: str = "Train") -> tuple[str, float] | None:
    attributes = product.get("product", {}).get("attributes", {})
    usage = attributes.get("usagetype", "")
    match = re.search(rf"-{infix}:(ml\.[a-z0-9-]+\.[a-z0-9]+)$", usage)
    if not match:
        return None
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            usd = float(dimension.get("pricePerUnit", {}).get("USD", 0) or 0)
            if usd > 0:
                return match.group(1), usd
    return None


def choose(
    settings: Settings, boto_session: boto3.Session, quota_client=None, pricing_client=None, job: str = "training"
) -> Choice:
    quota_client = quota_client or aws.client(boto_session, "service-quotas", config=aws.QUICK)
    # The Price List API is served from us-east-1 (and ap-south-1) only.
    pricing_client = pricing_client or aws.client(boto_session, "pricing", region="us-east-1", config=aws.QUICK)
    accepted = accepted_types(boto_session, job)
    quotas, quota_source = job_quotas(quota_client, job)
    live_prices = api_prices(pricing_client, settings.aws_region, job)

    rows = []
    for instance_type in accepted:
        if ACCELERATED.match(instance_type) and instance_type != settings.instance_type:
            continue
        if instance_type in live_prices:
            price, source = live_prices[instance_type], f"Price List API {settings.aws_region}"
        elif instance_type in PRICE_TABLE:
            price, source = PRICE_TABLE[instance_type], f"table {PRICE_TABLE_REGION} {PRICE_TABLE_DATE}"
        else:
            price, source = None, "no price"
        quota = None if quotas is None else quotas.get(instance_type, 0.0)
        rows.append(Row(instance_type, quota, price, source))
    rows.sort(
        key=lambda r: (not r.usable, r.price is None, r.price if r.price is not None else math.inf, r.instance_type)
    )

    warnings = [] if quotas is not None else [quota_source]
    if settings.instance_type != "auto":
        return _check_explicit(settings, accepted, rows, quota_source, warnings, job)
    candidates = [row for row in rows if row.usable and row.price is not None]
    if not candidates:
        raise ConfigError(
            f"no CPU {job} instance type has a quota above 0 in {settings.aws_region}: request "
            f"one in the Service Quotas console (SageMaker, '<type> for {job} job usage'), e.g. "
            "ml.m5.large, then rerun `inv instance`"
        )
    best = candidates[0]
    if best.quota is None:
        reason = (
            f"the cheapest CPU type {JOBS[job].create} accepts in {settings.aws_region} ({best.price:.3f} USD/h "
            f"from {best.price_source}); its {job} quota is UNKNOWN (Service Quotas unreadable): check "
            f"'{best.instance_type} for {job} job usage' in the Service Quotas console before paying; "
            "the image is CPU-only and Titanic needs well under 1 GB of memory"
        )
    else:
        reason = (
            f"the cheapest CPU type {JOBS[job].create} accepts with a {job} quota above 0 in "
            f"{settings.aws_region} (quota {best.quota:g}, {best.price:.3f} USD/h from {best.price_source}); "
            "the image is CPU-only and Titanic needs well under 1 GB of memory"
        )
    return Choice(best.instance_type, best.price, reason, rows, quota_source, warnings, job)


def _check_explicit(
    settings: Settings, accepted: list[str], rows: list[Row], quota_source: str, warnings: list[str], job: str
) -> Choice:
    wanted = settings.instance_type
    if wanted not in accepted:
        family = wanted.split(".")[1]
        near = ", ".join(t for t in accepted if t.split(".")[1] == family)
        raise ConfigError(
            f"INSTANCE_TYPE={wanted} is not a {job} instance type SageMaker accepts"
            + (f" (same family: {near})" if near else "")
            + "; or use INSTANCE_TYPE=auto"
        )
    row = next(r for r in rows if r.instance_type == wanted)
    if row.quota == 0:
        raise ConfigError(
            f"INSTANCE_TYPE={wanted} has a {job} quota of 0 in {settings.aws_region}: the job "
            "would fail with ResourceLimitExceeded; request an increase in Service Quotas or use "
            "INSTANCE_TYPE=auto"
        )
    cheapest = next((r for r in rows if r.usable and r.price is not None), None)
    if cheapest and row.price is not None and cheapest.price < row.price:
        warnings.append(
            f"{wanted} costs {row.price:.3f} USD/h; {cheapest.instance_type} would do at "
            f"{cheapest.price:.3f} USD/h (INSTANCE_TYPE=auto)"
        )
    if ACCELERATED.match(wanted):
        warnings.append(f"{wanted} has accelerators the CPU-only training image does not use")
    quota_text = f"{job} quota UNKNOWN: Service Quotas unreadable" if row.quota is None else f"quota {row.quota:g}"
    return Choice(
        wanted, row.price, f"set by INSTANCE_TYPE ({quota_text}, accepted by the API)", rows, quota_source, warnings,
        job,
    )  # fmt: skip
