"""The served model's page, runs/<job>/serve.md: what served it, how fast it answered a smoke set, and whether
it is the trained model (the validation AUC recomputed from the endpoint's answers beside the run's own)."""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from gs_ds_env.serve.model_source import ModelSource
from gs_ds_env.settings import Settings

SMOKE_ROWS = 50


def _post(url: str, body: bytes, content_type: str, accept: str) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type, "Accept": accept})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def auc(labels: list[int], scores: list[float]) -> float:
    """Area under the ROC curve as the probability a positive outranks a negative (ties count half)."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    negatives = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    if not positives or not negatives:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def smoke(url: str, csv_file: Path) -> dict:
    """One request with every row (the served AUC when the file has labels), then single-row requests."""
    text = csv_file.read_text()
    rows = list(csv.reader(io.StringIO(text)))
    header, data = rows[0], rows[1:]
    answer = json.loads(_post(f"{url}/invocations", text.encode(), "text/csv", "application/json"))
    result: dict = {"rows": len(data), "file": str(csv_file)}
    if "Survived" in header:
        labels = [int(row[header.index("Survived")]) for row in data]
        result["served_validation_auc"] = round(auc(labels, answer["predictions"]), 4)
    latencies = []
    for row in data[:SMOKE_ROWS]:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([header, row])
        started = time.perf_counter()
        _post(f"{url}/invocations", out.getvalue().encode(), "text/csv", "text/csv")
        latencies.append((time.perf_counter() - started) * 1000)
    result["single_row_ms"] = {
        "requests": len(latencies),
        "p50": round(statistics.median(latencies), 2),
        "p99": round(percentile(latencies, 99), 2),
    }
    return result


def _smoke_lines(measured: dict, trained: float | None) -> list[str]:
    """The smoke set's section: the AUC from the endpoint's answers beside the training run's, the latency."""
    lines = ["", "## Smoke set", "", f"`{measured['file']}`: {measured['rows']} rows."]
    if "served_validation_auc" in measured:
        same = "the same model" if trained is not None and measured["served_validation_auc"] == trained else "DIFFERENT"
        lines.append(
            f"- validation AUC from the endpoint's answers: {measured['served_validation_auc']} "
            f"(training run: {trained}): {same}"
        )
    latency = measured["single_row_ms"]
    lines.append(
        f"- single-row latency over {latency['requests']} requests: p50 {latency['p50']} ms, p99 {latency['p99']} ms"
    )
    return lines


def write_local(settings: Settings, source: ModelSource, endpoint) -> Path:
    """serve.md and serve.json beside the run: what served it (image, handler, code), how fast, and (the Titanic
    program's model, whose validation channel is here) whether it is the trained model."""
    run = source.run
    model = endpoint.model
    titanic = model.facts.get("kind") == "built-in" and "titanic" in model.handler
    smoke_set = source.smoke_set() if titanic else None
    measured = smoke(endpoint.url, smoke_set) if smoke_set else None
    lines = [
        f"# Served: {run.job_name}",
        "",
        f"- served at: {datetime.now(timezone.utc).isoformat(timespec='seconds')} (local mode), endpoint "
        f"`{endpoint.name}`, {endpoint.url}",
        f"- image: `{endpoint.image}`"
        + (" (the image the run trained in)" if endpoint.image in source.image_candidates(settings)[:1] else ""),
        f"- model data: `{source.archive}`",
        f"- handler: {model.handler} ({model.facts.get('kind')}; the model object: `{model.facts.get('model')}`"
        + (f"; the defaults stand in for {', '.join(model.facts['defaults'])}" if model.facts.get("defaults") else "")
        + ")",
        f"- code: {model.code_note}",
        f"- ready in {endpoint.ready_seconds:.1f} s (the SDK's `Model.deploy` until `/ping` answered); cost: none "
        "(this machine)",
    ]
    if measured:
        lines += _smoke_lines(measured, run.metrics.get("validation:auc"))
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        f"inv serve --run {run.job_name}          # until Ctrl-C",
        "inv predict --input " + (str(smoke_set) if smoke_set else "FILE.csv") + "   # in another terminal",
        "```",
        "",
    ]
    page = source.run_dir / "serve.md"
    page.write_text("\n".join(lines))
    record = {
        "endpoint": endpoint.name,
        "image": endpoint.image,
        "model_data": source.archive,
        "handler": model.facts,
        "code": model.code_note,
        "environment": model.environment,
        "ready_seconds": round(endpoint.ready_seconds, 2),
        "smoke": measured,
    }
    (source.run_dir / "serve.json").write_text(json.dumps(record, indent=2) + "\n")
    return page
