"""A run's record while the run goes on (RunDraft): what every run shares (settings, the job's name, the image,
parity, the run's timer) and the parts the program, its data and the target add as the run goes, each a field of
RunRecord (a name the record does not have is refused where it is added). Written once: at the end with the job's
result, or as soon as the job fails, is stopped or is left running (--detach)."""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.job.report import RunRecord, invoked_command, write
from gs_ds_env.settings import Settings

RECORD_FIELDS = frozenset(f.name for f in dataclasses.fields(RunRecord))


def _checked(fields: dict) -> dict:
    unknown = sorted(set(fields) - RECORD_FIELDS)
    if unknown:
        raise TypeError(f"not fields of a run record: {', '.join(unknown)}")
    return fields


@dataclass
class RunDraft:
    settings: Settings
    job_name: str
    built: object  # image.BuiltImage: local, or pushed
    checked: tuple[dict, object]  # parity's record, and the image's environment (None when attached)
    timer: object  # deploy.Timer: the run's steps so far
    parts: dict = field(default_factory=dict)

    def add(self, **fields) -> RunDraft:
        """The program's part (the Titanic data, or the script), the data's, the target's (where the job's things are)."""
        self.parts.update(_checked(fields))
        return self

    def write(
        self,
        result,
        pictures: list[str],
        *,
        channels: dict[str, str] | None,
        target_part: dict | None = None,
        **outcome,
    ) -> Path:
        """runs/<job>/run.json and report.md. `target_part`: where the target says the job's things are as it ended
        (the parts added before refine it: a processing job's log and console page); `outcome`: the job's own facts
        (status, reason, outputs, …), over both."""
        fields = {**_checked(target_part or {}), **self.parts, **_checked(outcome)}
        return _write_run(
            self.settings, self.job_name, self.built, self.checked, result, self.timer.seconds, pictures,
            channels=channels, **fields,
        )  # fmt: skip

    def on_failure(self, channels: dict):
        """A job that does not complete still leaves its record (recording_failures), with these channels."""
        return recording_failures(lambda **outcome: self.write(None, [], channels=channels, **outcome))


def image_record(built) -> dict:
    """The run record's `image` (an image.BuiltImage)."""
    record = {"uri": built.uri, "content_tag": built.content_tag, "size_bytes": built.size_bytes}
    if built.image_id:
        record["image_id"] = built.image_id
    if built.digest:  # pushed: the registry's digest, and the tags this run sent
        record.update(digest=built.digest, pushed=built.pushed)
    return record


def _write_run(
    settings,
    job_name: str,
    built,
    checked: tuple[dict, object],
    result,
    timings: dict[str, float],
    pictures: list[str],
    *,
    channels: dict[str, str] | None,
    hyperparameters: dict[str, str],
    **fields,
) -> Path:
    """Write the run record (run.json) and its report: what every run shares (settings, image, parity, the job's
    result, timings, the command) and the draft's parts."""
    from gs_ds_env.job import script_mode
    from gs_ds_env.job import versions as versions_mod

    started = time.perf_counter()
    parity_record, container = checked
    versions = fields.pop("versions", None) or versions_mod.collect(settings, built, container)
    timings = dict(timings)
    processing = fields.get("kind") == "processing"
    if result is not None:
        timings.update({f"{'process' if processing else 'train'}: {step}": s for step, s in result.steps.items()})
        if not processing:
            timings["training computation (in container)"] = result.training_seconds or 0.0
    timings["run record (versions, report)"] = round(time.perf_counter() - started, 2)
    record = RunRecord(
        target=settings.target,
        theme=settings.theme,
        kernel=settings.kernel_name,
        region=settings.aws_region,
        job_name=job_name,
        image=image_record(built),
        parity=parity_record,
        versions=versions,
        hyperparameters=hyperparameters,
        channels=channels,
        metrics=result.metrics if result else {},
        model_artifact=result.model_artifact if result else "",
        timings=timings,
        pictures=pictures,
        command=invoked_command(),
        environment={script_mode.SEED_VARIABLE: str(settings.seed)},
        **({"log_path": result.log_path} if result and result.log_path else {}),
        **fields,
    )
    run_json, report_md = write(settings.paths.run(record.job_name), record)
    outputs = "".join(
        f"\noutput {name}: {entry.get('path') or entry.get('uri')}" for name, entry in (record.outputs or {}).items()
    )
    model = f"\nmodel: {record.model_artifact}" if result and record.model_artifact else ""
    print(f"report: {report_md}\nrun record: {run_json}{model}{outputs}", flush=True)
    return run_json


@contextmanager
def recording_failures(write_failed):
    """A job that does not complete still leaves its record: `write_failed(status=…, reason=…, **facts)` runs
    before the failure or interruption goes on to the one-line error."""
    from gs_ds_env.job.training_job import TrainingFailed

    try:
        yield
    except TrainingFailed as failed:
        write_failed(status=failed.status, reason=failed.reason, **failed.facts)
        raise
    except KeyboardInterrupt as interrupted:
        status = getattr(interrupted, "status", "interrupted (Ctrl-C)")
        write_failed(status=status, reason=status)
        raise
