"""The training job, what both targets share: one `sagemaker.estimator.Estimator` for the theme's image, the job's
result and failures, what a model.tar.gz holds, hints for the usual failures. It runs in SageMaker local mode
(local_job.py: Docker on this machine) or on SageMaker (sagemaker_job.py); targets.py and deploy.py order the steps
around it: image, data, parity, the job, the run record."""

from __future__ import annotations

import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.errors import GsError
from gs_ds_env.job import metrics
from gs_ds_env.job.script_mode import SEED_VARIABLE, ScriptMode
from gs_ds_env.sdk import name_from_base, sagemaker
from gs_ds_env.settings import Settings

# ---- the job, both targets ----------------------------------------------------------------------------
# A run's status in run.json: SageMaker's words where it has them.
COMPLETED, FAILED, STOPPED_MAX_RUN, IN_PROGRESS = "completed", "failed", "stopped: max run", "in progress (detached)"


class TrainingFailed(GsError):
    """The job did not complete (failed, or stopped at MAX_RUN): `status` and `reason` go into its run record;
    `details` holds the FailureReason, last log lines and a hint."""

    def __init__(
        self, line: str, details: list[str] | None = None, *, status: str = FAILED, reason: str = "", **facts
    ) -> None:
        super().__init__(line)
        self.details = details or []
        self.status = status
        self.reason = reason or line
        self.facts = facts  # exit_code, log_path: what the record adds when known


@dataclass
class JobResult:
    """What a finished job left, either target: its model.tar.gz and metrics, and on SageMaker its bill."""

    model_artifact: str  # runs/<job>/model.tar.gz locally, s3://…/model.tar.gz on SageMaker
    metrics: dict[str, float]
    training_seconds: float | None
    status: str = COMPLETED
    log_path: str | None = None  # local mode: everything the job printed (runs/<job>/job.log)
    channels: dict[str, str] = field(default_factory=dict)  # local mode: the file:// inputs
    description: dict = field(default_factory=dict)  # SageMaker: DescribeTrainingJob
    local_copy: Path | None = None
    billable_seconds: int | None = None
    cost_usd: float | None = None
    log_streams: list[str] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)  # local mode: where the job's wall time went
    outputs: dict[str, dict] = field(default_factory=dict)  # a processing job: each output's place, files, bytes


def job_base(settings: Settings, program: str) -> str:
    """BASE_JOB_NAME-<theme>-<program>: which theme ran what, in the name SageMaker and runs/ show."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", Path(program).stem).strip("-") or "script"
    return f"{settings.base_job_name}-{settings.theme}-{stem}"


def new_job_name(settings: Settings, program: str = "titanic") -> str:
    """BASE_JOB_NAME-<theme>-<program>-<timestamp>, at most 63 characters (the SDK trims the base)."""
    return name_from_base(job_base(settings, program))


def estimator(
    settings: Settings,
    image_uri: str,
    session,
    *,
    local: bool,
    output_path: str,
    role: str,
    instance_type: str,
    checkpoint_s3_uri: str | None = None,
    script: ScriptMode | None = None,
    code_location: str | None = None,
):
    options = dict(
        image_uri=image_uri,
        role=role,
        instance_count=settings.instance_count,  # local mode too: one container per host, on one network
        instance_type="local" if local else instance_type,
        output_path=output_path,
        base_job_name=settings.base_job_name,
        # Script mode: exactly the user's hyperparameters; the project's programs find their seed in GS_SEED.
        hyperparameters=script.hyperparameters if script else settings.hyperparameters,
        environment={SEED_VARIABLE: str(settings.seed)},
        metric_definitions=script.metric_definitions if script else metrics.default_definitions(),
        sagemaker_session=session,
        # The debugger hook and profiler start extra processing jobs: they cost and use quota.
        debugger_hook_config=False,
        disable_profiler=True,
    )
    if script:
        # Script mode: the SDK ships the code (mounted in local mode, sourcedir.tar.gz on SageMaker) and sets
        # sagemaker_program / sagemaker_submit_directory, which the toolkit in the image reads.
        options.update(entry_point=script.entry_point, source_dir=str(script.code_dir or script.source_dir))
        if code_location:  # sourcedir.tar.gz under the project's prefix, not the SDK's default bucket
            options.update(code_location=code_location)
    if not local:
        options.update(
            volume_size=settings.volume_size,
            max_run=settings.max_run,
            use_spot_instances=settings.use_spot,
            max_wait=settings.max_wait if settings.use_spot else None,
            checkpoint_s3_uri=checkpoint_s3_uri if settings.use_spot else None,
            tags=[{"Key": k, "Value": v} for k, v in settings.tags.items()] or None,
        )
    job = _script_estimator_class()(**options)
    job.program = script.entry_point if script else None
    return job


_ESTIMATOR = None


def _script_estimator_class():
    """The SDK's Estimator, but local mode runs the entry point where it is in the source dir (`sub/train.py`), as
    SageMaker does: the SDK's local mode passes only the file's name, which the toolkit then cannot find."""
    global _ESTIMATOR
    if _ESTIMATOR is None:
        sagemaker()  # quiet the SDK before its first import
        from sagemaker.estimator import Estimator

        class ScriptEstimator(Estimator):
            program: str | None = None

            def _script_mode_hyperparam_update(self, code_dir: str, script: str) -> None:
                super()._script_mode_hyperparam_update(code_dir, self.program or script)

        _ESTIMATOR = ScriptEstimator
    return _ESTIMATOR


@dataclass(frozen=True)
class Failure:
    """What /opt/ml/output/failure says: one line for the error, the script's last stderr lines, its exit code."""

    line: str
    tail: list[str]
    exit_code: int | None


def parse_failure(text: str) -> Failure:
    """The toolkit writes `ExecuteUserScriptError:\nExitCode N\nErrorMessage "<the script's last stderr
    lines>"\nCommand "…"`; the project's own programs write their reason as plain text."""
    text = text.strip()
    code = re.search(r"^ExitCode (-?\d+)$", text, re.MULTILINE)
    if 'ErrorMessage "' in text:
        message = text.split('ErrorMessage "', 1)[1].split('"\nCommand', 1)[0].rstrip('"')
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        error_class = text.splitlines()[0].rstrip(":")
        last = (
            lines[-1] if lines else f"(the script wrote nothing to stderr; exit code {code.group(1) if code else '?'})"
        )
        # An older toolkit splits "ValueError: boom" into two lines: put the exception's name back.
        if len(lines) > 1 and re.fullmatch(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)", lines[-2]):
            last = f"{lines[-2]}: {last}"
        return Failure(f"{error_class}: {last[:300]}", lines, int(code.group(1)) if code else None)
    lines = [line for line in text.splitlines() if line.strip()]
    return Failure(lines[0][:300] if lines else "", lines[-20:], int(code.group(1)) if code else None)


def saved_files(artifact: Path) -> list[str]:
    """The files in model.tar.gz: none means /opt/ml/model was left empty, i.e. the program saved no model."""
    try:
        with tarfile.open(artifact) as archive:
            return [member.name for member in archive.getmembers() if member.isfile()]
    except (OSError, tarfile.TarError):
        return []


def read_metrics_json(artifact: Path) -> dict:
    """metrics.json from model.tar.gz when the program saved one ({} when not: it is optional)."""
    try:
        with tarfile.open(artifact) as archive:
            member = archive.extractfile("metrics.json")
            saved = json.load(member) if member else {}
    except (KeyError, tarfile.TarError, OSError, ValueError):
        return {}
    if not isinstance(saved, dict) or not isinstance(saved.get("metrics", {}), dict):
        return {}
    numeric = {
        k: v for k, v in saved.get("metrics", {}).items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    return {**saved, "metrics": numeric}


# ---- on SageMaker -------------------------------------------------------------------------------------
EMPTY_MODEL_HINT = "empty /opt/ml/model: the training program must save its model to /opt/ml/model before it exits"
# Packages of AWS's own framework containers, on no index: a script written for those images may import them.
AWS_PRIVATE_PACKAGE = re.compile(
    r"No module named '(sagemaker_(?:containers|xgboost_container|sklearn_container|pytorch_container|"
    r"pytorch_serving_container|tensorflow_container|algorithm_toolkit))"
)
# FailureReason / last log lines -> what usually causes it and what to do.
HINTS = [
    (
        AWS_PRIVATE_PACKAGE.pattern,
        "the script imports a package private to AWS's own framework containers (not on PyPI, so not in a theme "
        "image): what script mode needs is the SageMaker training toolkit's, which the image has (SM_* variables, "
        "hyperparameters as arguments); drop the import or copy the few lines it gives into your code",
    ),
    # An ECR image URI in an unrelated log line must not trigger the ECR hint: match pull failures only.
    (
        r"CannotPullContainer|Cannot pull|pull access denied|manifest .* not found|"
        r"not authorized to perform: ecr:|ecr:(BatchGetImage|GetDownloadUrlForLayer|GetAuthorizationToken)",
        "ECR auth or image: the execution role needs ecr:BatchGetImage/GetDownloadUrlForLayer on the repository, and "
        "the image must be in the job's region (`inv push`; policy from `inv iam-policy`)",
    ),
    (
        r"assume role|AssumeRole|not authorized to perform: sts",
        "role: SAGEMAKER_ROLE_ARN must trust sagemaker.amazonaws.com (trust policy from `inv iam-policy`)",
    ),
    (
        r"AccessDenied|Access Denied|\b403\b",
        "role permissions: the execution role cannot read the channels or write the output prefix "
        "(execution-role policy from `inv iam-policy`)",
    ),
    (
        r"No S3 objects found|Data download failed|does not exist.*s3|NoSuchKey",
        "channel paths: run `inv data --target sagemaker` and check the train/validation URIs in the request",
    ),
    (
        r"executable file not found|exec: \"train\"|no such file or directory.*train|Exec format error",
        "no entry point: the image must have an executable `train` on PATH (docker/Dockerfile puts training/ there)",
    ),
    (r"/opt/ml/model", EMPTY_MODEL_HINT),
    (
        r"ResourceLimitExceeded|quota",
        "quota: run `inv instance` and request an increase in Service Quotas, or set INSTANCE_TYPE=auto",
    ),
    (
        r"AlgorithmError|Traceback|Error",
        "the training program failed: read the log lines above; reproduce with `make deploy TARGET=local`",
    ),
]


def explain(reason: str) -> str:
    """A failure line, with what to do when the cause is one the project knows by name."""
    private = AWS_PRIVATE_PACKAGE.search(reason)
    if private:
        return (
            f"{reason} — {private.group(1)} is private to AWS's own containers (on no package index, so in no theme "
            "image): this image runs scripts with the SageMaker training toolkit instead; remove that import"
        )
    return reason


def hint_for(text: str) -> str:
    for pattern, hint in HINTS:
        if re.search(pattern, text, re.IGNORECASE):
            return hint
    return "see the job in the SageMaker console and its CloudWatch logs"
