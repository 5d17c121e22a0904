"""The run report: runs/<job>/run.json (machine-readable) and report.md (for people), one record for both targets."""

from __future__ import annotations

import json
import shlex
import sys
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

PICTURES = {"roc_curve.png": "ROC curve (validation)", "confusion_matrix.png": "Confusion matrix (validation)"}


def extract_pictures(output_archive: Path, run_dir: Path) -> list[str]:
    """Copy the training program's pictures out of output.tar.gz (data/*.png) next to report.md."""
    found = []
    try:
        with tarfile.open(output_archive) as archive:
            for member in archive.getmembers():
                name = Path(member.name).name
                if member.isfile() and name in PICTURES:
                    (run_dir / name).write_bytes(archive.extractfile(member).read())
                    found.append(name)
    except (OSError, tarfile.TarError):
        return []
    return sorted(found)


@dataclass
class RunRecord:
    """One training run, either target, the Titanic program or your script (script mode). run.json is this
    record (fields left None are left out); report.md is rendered from it."""

    target: str  # local | sagemaker
    theme: str
    kernel: str
    region: str
    job_name: str
    image: dict  # uri, content_tag, size_bytes; on SageMaker also digest and what was pushed
    parity: dict  # the kernel venv vs the image (parity.Result.as_record)
    versions: dict  # what rebuilds the image (versions.collect)
    hyperparameters: dict[str, str]
    channels: dict[str, str]  # name -> file:// or s3:// URI
    metrics: dict[str, float]
    model_artifact: str
    timings: dict[str, float]  # step -> seconds
    pictures: list[str] = field(default_factory=list)  # PNGs from output.tar.gz, beside report.md
    # What happened: completed, failed, stopped: max run, interrupted (…), stopped: … (StopTrainingJob sent),
    # in progress (detached); for any other than completed, the reason (the program's own last words)
    status: str = "completed"
    reason: str | None = None
    exit_code: int | None = None
    stderr_tail: list[str] | None = None  # the script's last stderr lines (local mode)
    log_tail: list[str] | None = None  # the job's last CloudWatch lines (SageMaker)
    command: str | None = None  # the command line this run came from
    log_path: str | None = None  # local mode: everything the job printed
    environment: dict[str, str] | None = None  # variables the job's container got from this project
    # The Titanic program: its data (source, sha256, rows and sha256 per channel) and the commands to reproduce it
    data: dict | None = None
    output_path: str | None = None
    reproduce: list[str] | None = None
    # Script mode: your entry point, the folder shipped with it and its dependencies, the copy of that code the job
    # ran (runs/<job>/code: what `inv serve --run` serves with), the metric definitions the job used
    entry_point: str | None = None
    source_dir: str | None = None
    shipped: str | None = None
    dependencies: list[str] | None = None
    code: str | None = None
    metric_definitions: list[dict[str, str]] | None = None
    # A processing job (kind "processing"; a training job leaves it out): its arguments, inputs and outputs
    kind: str | None = None
    arguments: list[str] | None = None
    inputs: dict[str, dict] | None = None
    outputs: dict[str, dict] | None = None
    # TARGET=sagemaker
    account: str | None = None
    s3_prefix_uri: str | None = None
    ecr_repository: str | None = None
    role_arn: str | None = None
    model_local_copy: str | None = None
    instance_type: str | None = None
    instance_count: int | None = None
    spot: bool | None = None
    instance_evidence: str | None = None
    billable_seconds: int | None = None
    price_usd_per_hour: float | None = None
    cost_usd: float | None = None
    log_stream: str | None = None
    console_url: str | None = None
    logs_url: str | None = None
    job_status: str | None = None

    def as_json(self) -> dict:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def load(cls, run_json: Path) -> RunRecord:
        return cls(**json.loads(run_json.read_text()))

    def program_fields(self) -> dict:
        """What the program part of the record holds (the Titanic data, or the script), to write it again."""
        names = (
            "hyperparameters", "data", "output_path", "reproduce", "entry_point", "source_dir", "shipped",
            "dependencies", "code", "metric_definitions", "kind", "arguments", "inputs", "outputs",
        )  # fmt: skip
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def write(run_dir: Path, record: RunRecord) -> tuple[Path, Path]:
    """runs/<job>/run.json and report.md, both from the one record."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run_json = run_dir / "run.json"
    run_json.write_text(json.dumps(record.as_json(), indent=2, default=str) + "\n")
    report_md = run_dir / "report.md"
    report_md.write_text(render(record))
    return run_json, report_md


def _table(rows: dict) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | `{value}` |" for key, value in rows.items() if value not in (None, "")]
    return "\n".join(lines)


def _parity_line(parity: dict) -> str:
    if not parity.get("checked"):
        return f"- Parity with the notebook kernel: not checked ({parity.get('reason', 'no kernel')})."
    if not parity["differences"] and not parity.get("python_differs"):
        source = parity.get("image_packages", "")
        image_side = f" (the image's packages: {source})" if source.startswith("reused") else ""
        return (
            f"- Parity with the notebook kernel: {parity['shared_packages']} shared packages, 0 differences"
            f"{image_side}."
        )
    listed = ", ".join(f"{d['name']} {d['kernel']} (kernel) vs {d['image']} (image)" for d in parity["differences"])
    return (
        f"- **Drift allowed (--allow-drift)**: the kernel and the image differ: {listed or 'in Python version'}. "
        "This run did not run exactly what the notebook ran."
    )


def _versions(versions: dict) -> list[str]:
    if not versions:
        return []
    rows = {key.replace("_", " "): value for key, value in versions.items() if key != "image_packages"}
    packages = "\n".join(f"{name}=={version}" for name, version in versions.get("image_packages", {}).items())
    return [
        "## Versions (what rebuilds this image)",
        _table(rows),
        f"<details><summary>{len(versions.get('image_packages', {}))} packages in the image</summary>\n\n"
        f"```\n{packages}\n```\n</details>",
    ]


# Where each target's job ran, as the report's summary says it.
WHERE = {
    "local": "SageMaker local mode (Docker on this machine)",
    "sagemaker": "SageMaker in {record.region} ({count} x {record.instance_type})",
}


def _summary(record: RunRecord) -> list[str]:
    where = WHERE[record.target].format(count=record.instance_count or 1, record=record)
    if record.kind == "processing":
        what = (
            f"- Ran `{record.entry_point}` from `{record.source_dir}` as processing job `{record.job_name}` on {where}."
        )
    elif record.entry_point:
        what = f"- Ran `{record.entry_point}` from `{record.source_dir}` (script mode) as job `{record.job_name}` on {where}."
    else:
        what = (
            f"- Trained the Titanic survival model ({record.hyperparameters.get('model')}) as job `{record.job_name}` "
            f"on {where}."
        )
    lines = [what, f"- Image `{record.image['uri']}` built from theme `{record.theme}` (kernel `{record.kernel}`)."]
    if record.status != "completed":
        lines.insert(
            0,
            f"- **Status: {record.status}**"
            + (f" — {record.reason}" if record.reason not in (None, record.status) else ""),
        )
    if record.data:
        rows = record.data["rows"]
        lines.append(
            f"- Data: `{record.data['source']}` (sha256 {record.data['sha256'][:12]}…), {rows.get('train')} train / "
            f"{rows.get('validation')} validation rows"
            + "".join(f"; {name} sha256 {entry['sha256'][:12]}…" for name, entry in record.data["channels"].items())
            + "."
        )
    auc = record.metrics.get("validation:auc")
    if auc is not None:
        lines.append(
            f"- Validation AUC {auc:.4f}, accuracy {record.metrics.get('validation:accuracy', float('nan')):.4f}."
        )
    elif not record.metrics and record.kind != "processing":
        lines.append("- No validation metrics were recorded.")
    cost = (
        f"; {record.billable_seconds} billable seconds on {record.instance_type}, about {record.cost_usd:.4f} USD."
        if record.cost_usd is not None
        else "."
    )
    if record.kind == "processing":
        written = ", ".join(f"`{name}`" for name in record.outputs or {}) or "none"
        lines += [f"- Outputs: {written}{cost}", _parity_line(record.parity)]
    else:
        model = f"`{record.model_artifact}`" if record.model_artifact else "none (the job did not complete)"
        lines += [f"- Model: {model}{cost}", _parity_line(record.parity)]
    return lines


def _what_happened(record: RunRecord) -> list[str]:
    """For a run that did not complete: its reason, the program's last words, where its whole log is."""
    if record.status == "completed":
        return []
    facts = {
        "Status": record.status,
        "Reason": record.reason,
        "Exit code": record.exit_code,
        "Command": record.command,
        "Log": record.log_path,
        "CloudWatch logs": record.logs_url,
    }
    parts = ["## What happened", _table(facts)]
    tail = record.stderr_tail or record.log_tail
    if tail:
        parts.append("The program's last lines:\n\n```\n" + "\n".join(tail) + "\n```")
    return parts


def _resources(record: RunRecord) -> dict:
    return {
        "Target": record.target,
        "Account": record.account,
        "Region": record.region,
        "S3 bucket / prefix": record.s3_prefix_uri,
        "ECR repository": record.ecr_repository,
        "Image URI": record.image["uri"],
        "Image digest": record.image.get("digest"),
        "Image size (MB)": round(record.image.get("size_bytes", 0) / 1e6, 1) or None,
        ("Processing" if record.kind == "processing" else "Training") + " job name": record.job_name,
        "Command": record.command,
        "Job log": record.log_path,
        "model.tar.gz": record.model_artifact,
        "Execution role": record.role_arn,
        "Instance type": record.instance_type,
        "Instance count / spot": f"{record.instance_count} / {record.spot}" if record.instance_count else None,
        "Price (USD per instance-hour)": record.price_usd_per_hour,
        "Billable seconds": record.billable_seconds,
        "Estimated cost (USD)": record.cost_usd,
        "CloudWatch log group / stream": record.log_stream,
        "Console (job)": record.console_url,
        "Console (logs)": record.logs_url,
    }


def _flow_and_program(record: RunRecord) -> tuple[str, list[str]]:
    """The run in one line (data -> job -> what it made), and the program's own section."""
    source = f"`{record.data['source']}`" if record.data else f"`{record.entry_point}` (script mode)"
    channels = (
        ", ".join(f"{name}: {uri}" for name, uri in record.channels.items()) or "none (the script makes its data)"
    )
    if record.kind != "processing":
        flow = (
            f"{source} → channels ({channels}) → training job `{record.job_name}` (image `{record.image['uri']}`) → "
            f"`{record.model_artifact}`"
        )
        return flow, ["## Hyperparameters", _table(record.hyperparameters)]
    outputs = ", ".join(
        f"{name}: {entry.get('path') or entry.get('uri')}"
        + (f" ({entry['files']} file(s), {entry['bytes'] / 1e3:.1f} kB)" if "files" in entry else "")
        for name, entry in (record.outputs or {}).items()
    )
    flow = (
        f"`{record.entry_point}` {record.arguments or []} on inputs ({channels}) → processing job `{record.job_name}` "
        f"(image `{record.image['uri']}`) → outputs ({outputs or 'none'})"
    )
    return flow, ["## Arguments", f"`{record.arguments or []}` (exactly these; nothing added)"]


def _code_shipped(record: RunRecord) -> list[str]:
    if not record.shipped:
        return []
    parts = ["## Code shipped", f"`{record.source_dir}`: {record.shipped}"]
    if record.dependencies:
        parts.append("Dependencies beside the entry point: " + ", ".join(f"`{d}`" for d in record.dependencies))
    if record.code and record.kind == "processing":
        parts.append(f"The copy the job ran: `{record.code}`")
    elif record.code:
        parts.append(f"The copy the job ran (and `inv serve --run {record.job_name}` serves with): `{record.code}`")
    return parts


def render(record: RunRecord) -> str:
    flow, program = _flow_and_program(record)
    parts = [
        f"# Run report: {record.job_name}",
        "## Summary",
        "\n".join(_summary(record)),
        *_what_happened(record),
        "## Flow",
        flow,
        "## Resources",
        _table(_resources(record)),
        *program,
        *(
            ["## Metrics", _table({name: f"{value:.6g}" for name, value in record.metrics.items()})]
            if record.metrics or record.kind != "processing"
            else []
        ),
        "## Step timings (seconds)",
        _table({step: f"{seconds:.1f}" for step, seconds in record.timings.items()}),
        *_code_shipped(record),
    ]
    if record.pictures:
        parts += ["## Pictures", "\n\n".join(f"![{PICTURES.get(name, name)}]({name})" for name in record.pictures)]
    parts += _versions(record.versions)
    if record.instance_evidence:
        parts += ["## Instance choice", record.instance_evidence]
    if record.reproduce:
        parts += ["## Reproduce", "```bash\n" + "\n".join(record.reproduce) + "\n```"]
    return "\n\n".join(parts) + "\n"


def invoked_command() -> str:
    """The command line this run came from, as the person typed it (`inv train …`)."""
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]])
