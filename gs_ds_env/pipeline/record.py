"""The record of one pipeline execution: runs/<pipeline>-<time>/run.json and report.md, with each step's status,
time and outputs, the parameters, the condition's outcome, the evaluation (evaluation.json, kept), the registered
model version, and the graph of the steps as Mermaid, coloured by status."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gs_ds_env.pipeline import definition

WHERE = {"local": "this machine (the SDK's LocalPipelineSession)", "sagemaker": "SageMaker Pipelines"}


@dataclass
class PipelineRecord:
    kind: str  # "pipeline"
    pipeline: str  # the module: pipelines/<pipeline>.py
    name: str  # what SageMaker calls it
    target: str
    status: str  # Succeeded | Failed | Stopped | Executing | in progress (detached)
    execution: str  # the local execution id, or the SageMaker execution ARN
    started: str
    image: str
    parameters: dict
    command: str
    seconds: float | None = None
    failure: str | None = None
    steps: dict = field(default_factory=dict)  # name -> {status, seconds, failure, metadata, outputs}
    definition: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)  # property file name -> its JSON
    registered: dict = field(default_factory=dict)  # {group, version, status, arn}
    predictions: dict = field(default_factory=dict)  # transform step -> {rows_in, rows_out, path}
    console_url: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def graph(self) -> str:
        return definition.mermaid(definition.nodes(self.definition), self.steps)

    def conditions(self) -> dict[str, bool]:
        return {
            name: step["metadata"]["Condition"].get("Outcome") in (True, "True", "true")
            for name, step in self.steps.items()
            if "Condition" in step.get("metadata", {})
        }


def write(run_dir: Path, record: PipelineRecord) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    run_json, report = run_dir / "run.json", run_dir / "report.md"
    run_json.write_text(json.dumps(asdict(record), indent=2, default=str) + "\n")
    report.write_text(render(record))
    return run_json, report


def render(record: PipelineRecord) -> str:
    where = WHERE[record.target]
    summary = [
        f"- Pipeline `{record.name}` (pipelines/{record.pipeline}.py) on {where}: **{record.status}**"
        + (f" in {record.seconds:.0f} s" if record.seconds is not None else "")
        + (f" — {record.failure}" if record.failure else "."),
        f"- Every step in the image `{record.image}`.",
    ]
    for condition, passed in record.conditions().items():
        summary.append(f"- Condition `{condition}`: {'true' if passed else 'false'}.")
    for name, document in record.evaluation.items():
        metrics = document.get("binary_classification_metrics", {})
        shown = ", ".join(f"{k} {v.get('value')}" for k, v in metrics.items()) or json.dumps(document)[:200]
        summary.append(f"- Evaluation `{name}`: {shown}.")
    if record.registered:
        summary.append(
            f"- Registered: `{record.registered['group']}` version {record.registered['version']} "
            f"({record.registered['status']})."
        )
    for step, counts in record.predictions.items():
        summary.append(
            f"- `{step}`: {counts['rows_in']} rows in, {counts['rows_out']} predictions out (`{counts['path']}`)."
        )
    summary += [f"- {note}" for note in record.notes]
    rows = ["| step | type | status | seconds | outputs / why |", "|---|---|---|---|---|"]
    kinds = {node.name: node.kind for node in definition.nodes(record.definition)}
    for node_name in kinds:
        step = record.steps.get(node_name, {})
        seconds = step.get("seconds")
        detail = step.get("failure") or ", ".join(f"{k}: `{v}`" for k, v in step.get("outputs", {}).items())
        rows.append(
            f"| {node_name} | {kinds[node_name]} | {step.get('status', 'not run')} | "
            f"{'' if seconds is None else f'{seconds:.1f}'} | {detail} |"
        )
    parameters = "\n".join(f"| {k} | `{v}` |" for k, v in record.parameters.items())
    parts = [
        f"# Pipeline run: {record.name} ({record.started})",
        "## Summary",
        "\n".join(summary),
        "## Graph",
        f"```mermaid\n{record.graph}\n```",
        "## Steps",
        "\n".join(rows),
        "## Parameters",
        "| parameter | value |\n|---|---|\n" + parameters,
    ]
    if record.evaluation:
        parts += ["## Evaluation", "```json\n" + json.dumps(record.evaluation, indent=2) + "\n```"]
    parts += [
        "## Reproduce",
        f"```bash\n# TARGET={record.target}\n{record.command}\n```",
    ]
    if record.console_url:
        parts.append(f"Console: {record.console_url}")
    return "\n\n".join(parts) + "\n"


def started_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_folder_name(pipeline: str) -> str:
    return f"{pipeline}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"


def table(rows: list[dict]) -> str:
    if not rows:
        return "no pipelines"
    header = list(rows[0])
    cells = [header] + [[str(row.get(key, "")) for key in header] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


def listing(settings) -> str:
    """TARGET=local: each pipeline's executions recorded under runs/ (a local pipeline exists only as it runs)."""
    rows = []
    for run_json in sorted(settings.runs_dir.glob("*/run.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            entry = json.loads(run_json.read_text())
        except (OSError, ValueError):
            continue
        if entry.get("kind") != "pipeline":
            continue
        rows.append({"pipeline": entry["pipeline"], "execution": run_json.parent.name, "status": entry["status"],
                     "seconds": entry.get("seconds") or "", "report": str(run_json.parent / "report.md")})  # fmt: skip
    if not rows:
        return "no pipeline has run here: `inv pipeline.run titanic` (pipelines/ holds the definitions)"
    return table(rows)
