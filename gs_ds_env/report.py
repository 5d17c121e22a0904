"""The run report: runs/<job>/run.json (machine-readable) and report.md (for people), one record for both targets."""

from __future__ import annotations

import json
import tarfile
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


def write(run_dir: Path, record: dict) -> tuple[Path, Path]:
    run_dir.mkdir(parents=True, exist_ok=True)
    run_json = run_dir / "run.json"
    run_json.write_text(json.dumps(record, indent=2, default=str) + "\n")
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
        return f"- Parity with the notebook kernel: {parity['shared_packages']} shared packages, 0 differences."
    listed = ", ".join(f"{d['name']} {d['kernel']} (kernel) vs {d['image']} (image)" for d in parity["differences"])
    return (
        f"- **Drift allowed (--allow-drift)**: the kernel and the image differ: {listed or 'in Python version'}. "
        "This run did not run exactly what the notebook ran."
    )


def _versions(record: dict) -> list[str]:
    versions = record.get("versions")
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


def render(record: dict) -> str:
    metrics = record.get("metrics", {})
    auc = metrics.get("validation:auc")
    target = record["target"]
    where = "SageMaker local mode (Docker on this machine)" if target == "local" else f"SageMaker in {record['region']}"
    summary = [
        f"- Trained the Titanic survival model ({record['hyperparameters'].get('model')}) as job `{record['job_name']}` on {where}.",
        f"- Image `{record['image']['uri']}` built from theme `{record['theme']}` (kernel `{record['kernel']}`).",
        f"- Data: `{record['data']['source']}` (sha256 {record['data']['sha256'][:12]}…), "
        f"{record['data']['rows'].get('train')} train / {record['data']['rows'].get('validation')} validation rows"
        + "".join(
            f"; {name} sha256 {entry['sha256'][:12]}…" for name, entry in record["data"].get("channels", {}).items()
        )
        + ".",
        f"- Validation AUC {auc:.4f}, accuracy {metrics.get('validation:accuracy', float('nan')):.4f}."
        if auc is not None
        else "- No validation metrics were recorded.",
        f"- Model: `{record['model_artifact']}`"
        + (
            f"; {record['billable_seconds']} billable seconds on {record['instance_type']}, about "
            f"{record['cost_usd']:.4f} USD."
            if record.get("cost_usd") is not None
            else "."
        ),
    ]
    if "parity" in record:
        summary.append(_parity_line(record["parity"]))
    resources = {
        "Target": target,
        "Account": record.get("account"),
        "Region": record.get("region"),
        "S3 bucket / prefix": record.get("s3_prefix_uri"),
        "ECR repository": record.get("ecr_repository"),
        "Image URI": record["image"]["uri"],
        "Image digest": record["image"].get("digest"),
        "Image size (MB)": round(record["image"].get("size_bytes", 0) / 1e6, 1) or None,
        "Training job name": record["job_name"],
        "model.tar.gz": record["model_artifact"],
        "Execution role": record.get("role_arn"),
        "Instance type": record.get("instance_type"),
        "Instance count / spot": f"{record['instance_count']} / {record['spot']}" if "spot" in record else None,
        "Price (USD per instance-hour)": record.get("price_usd_per_hour"),
        "Billable seconds": record.get("billable_seconds"),
        "Estimated cost (USD)": record.get("cost_usd"),
        "CloudWatch log group / stream": record.get("log_stream"),
        "Console (job)": record.get("console_url"),
        "Console (logs)": record.get("logs_url"),
    }
    parts = [
        f"# Run report: {record['job_name']}",
        "## Summary",
        "\n".join(summary),
        "## Flow",
        f"`{record['data']['source']}` → channels train/validation ({', '.join(record['channels'].values())}) → "
        f"training job `{record['job_name']}` (image `{record['image']['uri']}`) → `{record['model_artifact']}`",
        "## Resources",
        _table(resources),
        "## Hyperparameters",
        _table(record["hyperparameters"]),
        "## Metrics",
        _table({name: f"{value:.4f}" for name, value in metrics.items()}),
        "## Step timings (seconds)",
        _table({step: f"{seconds:.1f}" for step, seconds in record.get("timings", {}).items()}),
    ]
    if record.get("pictures"):
        parts += ["## Pictures", "\n\n".join(f"![{PICTURES.get(name, name)}]({name})" for name in record["pictures"])]
    parts += _versions(record)
    if record.get("instance_evidence"):
        parts += ["## Instance choice", record["instance_evidence"]]
    parts += ["## Reproduce", "```bash\n" + "\n".join(record.get("reproduce", [])) + "\n```"]
    return "\n\n".join(parts) + "\n"


def write_script(run_dir: Path, record: dict) -> tuple[Path, Path]:
    """run.json and a short report.md for a script-mode job (the user's own code, not the Titanic program)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    run_json = run_dir / "run.json"
    run_json.write_text(json.dumps(record, indent=2, default=str) + "\n")
    parts = [
        f"# Run report: {record['job_name']}",
        "## Summary",
        f"- Ran `{record['entry_point']}` from `{record['source_dir']}` in image `{record['image']['uri']}` "
        f"(theme `{record['theme']}`, kernel `{record['kernel']}`), "
        + ("SageMaker local mode." if record["target"] == "local" else f"SageMaker ({record.get('instance_type')})."),
        f"- Model: `{record['model_artifact']}`.",
        _parity_line(record["parity"]),
        "## Hyperparameters",
        _table(record["hyperparameters"]),
        "## Channels",
        _table(record["channels"]) if record["channels"] else "none (the script brings or generates its data)",
        "## Metrics",
        _table({name: f"{value:.6g}" for name, value in record["metrics"].items()}),
    ]
    if record.get("pictures"):
        parts += ["## Pictures", "\n\n".join(f"![{PICTURES.get(name, name)}]({name})" for name in record["pictures"])]
    parts += _versions(record)
    report_md = run_dir / "report.md"
    report_md.write_text("\n\n".join(parts) + "\n")
    return run_json, report_md
