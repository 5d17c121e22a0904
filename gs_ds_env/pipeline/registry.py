"""`inv model.*`: the model registry a pipeline registers into, the same verbs on both targets.

On SageMaker it is the Model Registry: a model package group per pipeline (<BASE_JOB_NAME>-<pipeline>), a version
per successful execution, its metrics (the evaluation's evaluation.json) and its approval status. Local mode has
none, so a local pipeline's versions are files: runs/model-registry/<group>.json (each version's metrics, status,
the execution that made it) and runs/model-registry/<group>/<version>/model.tar.gz (its model, kept).
`latest-approved` (or a version number, or an ARN) names the model `inv endpoint.deploy --model-package` and
`inv serve --model-package` use.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gs_ds_env.errors import InputError
from gs_ds_env.settings import Settings

PENDING, APPROVED, REJECTED = "PendingManualApproval", "Approved", "Rejected"
LATEST_APPROVED = "latest-approved"


class RegistryError(InputError):
    """No such group or version, or nothing approved; the message says what exists."""


@dataclass
class Version:
    group: str
    version: int
    status: str
    created: str
    model: str  # model.tar.gz: a path (local) or s3:// URI
    metrics: dict = field(default_factory=dict)  # evaluation.json as the evaluation step wrote it
    execution: str = ""  # the run folder (local) or the pipeline execution ARN
    theme: str = ""
    py: str = ""
    arn: str = ""  # SageMaker: the model package ARN

    @property
    def auc(self) -> float | None:
        value = self.metrics.get("binary_classification_metrics", {}).get("auc", {}).get("value")
        return float(value) if value is not None else None


def folder(settings: Settings) -> Path:
    return settings.runs_dir / "model-registry"


# ---- local: files under runs/model-registry/ ---------------------------------------------------------------------
class LocalRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _file(self, group: str) -> Path:
        return folder(self.settings) / f"{group}.json"

    def versions(self, group: str | None = None) -> list[Version]:
        groups = [group] if group else sorted(p.stem for p in folder(self.settings).glob("*.json"))
        return [version for g in groups for version in self._read(g)]

    def _read(self, group: str) -> list[Version]:
        path = self._file(group)
        if not path.is_file():
            return []
        try:
            return [Version(**entry) for entry in json.loads(path.read_text())["versions"]]
        except (ValueError, KeyError, TypeError) as error:
            raise RegistryError(f"{path} cannot be read ({type(error).__name__}): it was edited or damaged") from None

    def _save(self, group: str, versions: list[Version]) -> None:
        path = self._file(group)
        path.parent.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".json.tmp")
        scratch.write_text(json.dumps({"group": group, "versions": [asdict(v) for v in versions]}, indent=2) + "\n")
        scratch.replace(path)  # a reader never sees half a file

    def register(self, group: str, model: Path, metrics: dict, execution: str) -> Version:
        """A new version (pending approval) of `group`, its model.tar.gz kept beside the registry file."""
        versions = self._read(group)
        number = max((v.version for v in versions), default=0) + 1
        kept = folder(self.settings) / group / str(number) / "model.tar.gz"
        kept.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(model, kept)
        version = Version(
            group, number, PENDING, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), str(kept), metrics,
            execution, self.settings.theme, self.settings.py,
        )  # fmt: skip
        self._save(group, [*versions, version])
        return version

    def set_status(self, version: Version, status: str) -> None:
        updated = [
            Version(**{**asdict(v), "status": status}) if v.version == version.version else v
            for v in self._read(version.group)
        ]
        self._save(version.group, updated)


# ---- SageMaker: the Model Registry -----------------------------------------------------------------------------
class SageMakerRegistry:
    def __init__(self, settings: Settings) -> None:
        from gs_ds_env import aws

        self.settings = settings
        boto_session = aws.session(settings)
        self.client, self.s3 = aws.client(boto_session, "sagemaker"), aws.client(boto_session, "s3")

    def versions(self, group: str | None = None) -> list[Version]:
        return [version for g in ([group] if group else self._groups()) for version in self._read(g)]

    def _groups(self) -> list[str]:
        groups = []
        paginator = self.client.get_paginator("list_model_package_groups")
        for page in paginator.paginate(NameContains=self.settings.base_job_name):
            groups += [g["ModelPackageGroupName"] for g in page["ModelPackageGroupSummaryList"]]
        return sorted(groups)

    def _read(self, group: str) -> list[Version]:
        versions = []
        for page in self.client.get_paginator("list_model_packages").paginate(ModelPackageGroupName=group):
            versions += [
                self._version(group, summary["ModelPackageArn"]) for summary in page["ModelPackageSummaryList"]
            ]
        return sorted(versions, key=lambda v: v.version)

    def _version(self, group: str, arn: str) -> Version:
        described = self.client.describe_model_package(ModelPackageName=arn)
        containers = described.get("InferenceSpecification", {}).get("Containers", [{}])
        # ModelMetrics(model_statistics=...) as the API stores it: ModelQuality.Statistics
        statistics = described.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri", "")
        metadata = described.get("CustomerMetadataProperties", {})
        created = described.get("CreationTime")
        return Version(
            group, described.get("ModelPackageVersion", 0), described.get("ModelApprovalStatus", ""),
            created.strftime("%Y-%m-%dT%H:%M:%SZ") if hasattr(created, "strftime") else str(created or ""),
            containers[0].get("ModelDataUrl", ""), _read_metrics(self.s3, statistics),
            described.get("MetadataProperties", {}).get("GeneratedBy", ""),
            metadata.get("gs-ds-env:theme", ""), metadata.get("gs-ds-env:py", ""), arn,
        )  # fmt: skip

    def set_status(self, version: Version, status: str) -> None:
        self.client.update_model_package(ModelPackageArn=version.arn, ModelApprovalStatus=status)


REGISTRIES = {"local": LocalRegistry, "sagemaker": SageMakerRegistry}


def _read_metrics(s3, uri: str) -> dict:
    if not uri.startswith("s3://"):
        return {}
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except Exception:  # noqa: BLE001 - the metrics are shown when they can be read; the version exists anyway
        return {}


# ---- the verbs, both targets ------------------------------------------------------------------------------------
def versions(settings: Settings, group: str | None = None) -> list[Version]:
    return REGISTRIES[settings.target](settings).versions(group)


def find(settings: Settings, which: str, group: str | None = None) -> Version:
    """A version by number (within --group, or the only group), ARN, or latest-approved."""
    found = versions(settings, group)
    if which == LATEST_APPROVED:
        approved = [v for v in found if v.status == APPROVED]
        if not approved:
            raise RegistryError(
                f"no approved model{f' in {group}' if group else ''}: approve one with `inv model.approve VERSION` "
                "(see `inv model.list`)"
            )
        return max(approved, key=lambda v: (v.created, v.version))
    matches = [v for v in found if v.arn == which or (which.isdigit() and v.version == int(which))]
    if len({v.group for v in matches}) > 1:
        raise RegistryError(
            f"version {which} is in several groups ({', '.join(sorted({v.group for v in matches}))}): give --group"
        )
    if not matches:
        listed = ", ".join(f"{v.group}/{v.version}" for v in found) or "none"
        raise RegistryError(f"no model version {which!r}: the registry holds {listed} (inv model.list)")
    return matches[0]


def set_status(settings: Settings, which: str, status: str, group: str | None = None) -> Version:
    version = find(settings, which, group)
    REGISTRIES[settings.target](settings).set_status(version, status)
    return Version(**{**asdict(version), "status": status})


def table(found: list[Version]) -> str:
    if not found:
        return "no model versions: `inv pipeline.run titanic` registers one when its evaluation passes"
    rows = [("group", "version", "status", "auc", "created", "made by")]
    for v in found:
        auc = f"{v.auc:.4f}" if v.auc is not None else "-"
        rows.append((v.group, str(v.version), v.status, auc, v.created, v.execution or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )
