"""`inv process`: a data-preparation (or evaluation) script as SageMaker Processing runs it, in the theme image, on
either target — a new program of the one run flow (deploy.execute), beside the training ones.

The contract (CreateProcessingJob): each input is mounted at /opt/ml/processing/input/<name>, each output is
collected from /opt/ml/processing/output/<name>, the code at /opt/ml/processing/input/code; the script gets exactly
the user's arguments (the SDK's `arguments=[...]`), nothing else; /opt/ml/config/resourceconfig.json names the
current host and all hosts, so a script knows its shard. Locally (the SDK's local mode, one container) outputs land
in runs/<job>/output/<name>/; on SageMaker in <prefix>/processing/<job>/<name>/, local inputs are uploaded to
content-addressed prefixes (<prefix>/processing-input/<name>/<digest>/, as training channels), and `--shard`
spreads the input's objects over the instances (S3DataDistributionType=ShardedByS3Key).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.job import script_mode
from gs_ds_env.settings import ConfigError, Settings

CONTAINER_INPUT = "/opt/ml/processing/input"
CONTAINER_OUTPUT = "/opt/ml/processing/output"
CODE_INPUT = "code"  # /opt/ml/processing/input/code: where the SDK's ScriptProcessor puts code, too
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # a ProcessingInput/Output name, also a folder
# CreateProcessingJob's limits: ProcessingInputs (one of them the code), Outputs, ContainerArguments.
MAX_INPUTS, MAX_OUTPUTS, MAX_ARGUMENTS, MAX_ARGUMENT = 10 - 1, 10, 256, 256


@dataclass(frozen=True)
class DataInput:
    name: str
    source: str  # a local folder or file, or s3://
    shard: bool = False

    @property
    def container_path(self) -> str:
        return f"{CONTAINER_INPUT}/{self.name}"


@dataclass(frozen=True)
class DataOutput:
    name: str
    destination: str = ""  # s3:// on SageMaker (default: <prefix>/processing/<job>/<name>); locally runs/<job>/output

    @property
    def container_path(self) -> str:
        return f"{CONTAINER_OUTPUT}/{self.name}"


def parse_inputs(specs: list[str], shard: bool, reads_s3: bool) -> list[DataInput]:
    """--input name=PATH|s3://… (repeatable): a folder ships as it is, a file alone; s3:// only on SageMaker."""
    inputs: dict[str, DataInput] = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not sep or not NAME.fullmatch(name) or name == CODE_INPUT:
            raise ConfigError(
                f"--input {spec!r} is not name=path (a name of letters, digits, '_', '-', not 'code'): "
                "e.g. --input raw=data/events/"
            )
        if name in inputs:
            raise ConfigError(f"--input {name!r} is given twice: keep one")
        if where.startswith("s3://"):
            if not reads_s3:
                raise ConfigError(f"--input {spec!r}: local mode reads local files; s3:// inputs need TARGET=sagemaker")
        else:
            path = Path(where).expanduser().resolve()
            if not where.strip() or not path.exists():
                raise ConfigError(f"--input {spec!r}: {where or '(empty)'} does not exist")
            where = str(path)
        inputs[name] = DataInput(name, where, shard)
    if len(inputs) > MAX_INPUTS:
        raise ConfigError(f"{len(inputs)} inputs: SageMaker allows {MAX_INPUTS} besides the code")
    if shard and not inputs:
        raise ConfigError("--shard spreads the inputs over the instances: give an --input")
    return list(inputs.values())


def parse_outputs(specs: list[str], writes_s3: bool) -> list[DataOutput]:
    """--output name[=s3://…] (repeatable): what the script writes under /opt/ml/processing/output/<name>."""
    outputs: dict[str, DataOutput] = {}
    for spec in specs:
        name, sep, where = spec.partition("=")
        if not NAME.fullmatch(name):
            raise ConfigError(f"--output {spec!r} is not name[=s3://...]: e.g. --output daily")
        if name in outputs:
            raise ConfigError(f"--output {name!r} is given twice: keep one")
        if sep and not where.startswith("s3://"):
            raise ConfigError(f"--output {spec!r}: a destination is an s3:// URI (locally: runs/<job>/output/{name}/)")
        if sep and not writes_s3:
            raise ConfigError(f"--output {spec!r}: TARGET=local writes runs/<job>/output/{name}/, not S3")
        outputs[name] = DataOutput(name, where)
    if len(outputs) > MAX_OUTPUTS:
        raise ConfigError(f"{len(outputs)} outputs: SageMaker allows at most {MAX_OUTPUTS}")
    return list(outputs.values())


def parse_arguments(arguments: list[str]) -> list[str]:
    if len(arguments) > MAX_ARGUMENTS or any(len(a) > MAX_ARGUMENT for a in arguments):
        raise ConfigError(f"SageMaker takes at most {MAX_ARGUMENTS} arguments of at most {MAX_ARGUMENT} characters")
    return list(arguments)


@dataclass(frozen=True)
class ProcessingSpec:
    """The code (an entry point inside its source dir, as script mode has it), its inputs, outputs and arguments."""

    script: script_mode.ScriptMode  # entry point, source dir, what ships; no hyperparameters
    inputs: list[DataInput]
    outputs: list[DataOutput]
    arguments: list[str] = field(default_factory=list)

    @property
    def entry_point(self) -> str:
        return self.script.entry_point

    @property
    def command(self) -> list[str]:
        """The container's entry point: the theme image's Python on the script, where the code input lands."""
        return ["python3", f"{CONTAINER_INPUT}/{CODE_INPUT}/{self.entry_point}"]


def prepare(
    settings: Settings, inputs: list[DataInput], outputs: list[DataOutput], arguments: list[str]
) -> ProcessingSpec:
    """ENTRY_POINT (--code) and SOURCE_DIR checked as script mode checks them; the rest as parsed."""
    script = script_mode.prepare(settings, {}, [])
    return ProcessingSpec(dataclasses.replace(script, hyperparameters={}), inputs, outputs, arguments)


def describe_input(item: DataInput, instance_count: int, shards: bool) -> str:
    """An input as the plan says it; `shards`: SageMaker spreads a --shard input over the instances."""
    where = item.source if item.source.startswith("s3://") else script_mode.describe_channel(item.source)
    if not item.shard:
        return f"{item.name}: {where} -> {item.container_path} (every instance gets all of it)"
    if not shards:
        return f"{item.name}: {where} -> {item.container_path} (--shard: local mode runs one container, which gets all of it)"
    if item.source.startswith("s3://"):
        return f"{item.name}: {where} -> {item.container_path}, its objects spread over {instance_count} instance(s) (ShardedByS3Key)"
    files = (
        [p for p in Path(item.source).rglob("*") if p.is_file()] if Path(item.source).is_dir() else [Path(item.source)]
    )
    share = -(-len(files) // instance_count)
    return (
        f"{item.name}: {where} -> {item.container_path}, {len(files)} object(s) spread over {instance_count} "
        f"instance(s): at most {share} each (ShardedByS3Key)"
    )


def describe_source(item: DataInput) -> dict:
    """What the record keeps of an input: where it came from and, for a local one, its files, bytes and digest (the
    sha256 over each file's name and sha256, as the content address of its upload is made)."""
    entry: dict = {"source": item.source, "shard": item.shard}
    if item.source.startswith("s3://"):
        return entry
    import hashlib

    from gs_ds_env.data import s3_data

    files = s3_data.channel_files(Path(item.source))
    listing = "".join(f"{relative}\0{s3_data.sha256_of(path)}\n" for relative, path in files)
    return {**entry, "files": len(files), "bytes": sum(path.stat().st_size for _, path in files),
            "sha256": hashlib.sha256(listing.encode()).hexdigest()}  # fmt: skip


@dataclass
class ProcessingProgram:
    """The run flow's program for a processing job: the code (a copy kept in runs/<job>/code), its inputs handed to
    the target (mounted folders, or content-addressed S3 prefixes), the job itself run by the target's `process`."""

    spec: ProcessingSpec
    job_name: str = ""
    builds_kernel: bool = False
    checks_image: bool = False
    kind: str = "processing"

    @property
    def name(self) -> str:
        return self.spec.entry_point

    @property
    def script(self) -> script_mode.ScriptMode:
        return self.spec.script

    def stage_code(self, run_dir: Path) -> None:
        if self.spec.script.code_dir is None:
            code = script_mode.stage_code(self.spec.script, run_dir / "code")
            self.spec = dataclasses.replace(self.spec, script=dataclasses.replace(self.spec.script, code_dir=code))

    def local_channels(self, settings: Settings, timer, staging: Path) -> tuple[dict, dict]:
        self.stage_code(staging.parent)
        local = {item.name: item.source for item in self.spec.inputs}
        return script_mode.local_folders(local, staging), {}

    def sagemaker_channels(self, settings: Settings, timer, s3) -> tuple[dict, dict]:
        from gs_ds_env.data import s3_data

        self.stage_code(settings.paths.run(self.job_name))
        with timer.step("inputs"):
            sources = {item.name: item.source for item in self.spec.inputs}
            sources[CODE_INPUT] = str(self.spec.script.code_dir)
            uploaded = s3_data.upload_channels(settings, s3, sources, area="processing-input").channels
        return uploaded, {}

    def run(self, target, draft, channels: dict, detach: bool) -> Path:
        return target.process(draft, self, channels, detach)

    def record_fields(self, settings: Settings, job_name: str, target) -> dict:
        from gs_ds_env.job.report import invoked_command

        return {
            "kind": "processing",
            "hyperparameters": {},
            "entry_point": self.spec.entry_point,
            "source_dir": str(self.spec.script.source_dir),
            "shipped": self.spec.script.shipped_summary(),
            "code": str(self.spec.script.code_dir) if self.spec.script.code_dir else None,
            "arguments": self.spec.arguments,
            "inputs": {item.name: describe_source(item) for item in self.spec.inputs},
            "reproduce": [
                "git clone <this repository> && cd gs-ds-env",
                f"# THEME={settings.theme} PY={settings.py} TARGET={settings.target}",
                invoked_command(),
            ],
        }

    def _plan_head(self, settings: Settings, on_sagemaker: bool) -> list[str]:
        """The plan's head; `on_sagemaker` (the SageMaker target's plan): the image is pushed, inputs can be sharded."""
        from gs_ds_env.job.plans import image_step

        return [
            f"plan for inv process (theme {settings.theme}, Python {settings.py}, TARGET={settings.target}):",
            f"  1. {image_step(settings, push=on_sagemaker)}",
            f"  code: {self.spec.script.source_dir}/ — {self.spec.script.shipped_summary()}; runs `{' '.join(self.spec.command)}`",
            f"  arguments, exactly: {self.spec.arguments} (nothing is added)",
            *(f"  input {describe_input(item, settings.instance_count, on_sagemaker)}" for item in self.spec.inputs),
        ]

    def local_plan(self, settings: Settings) -> str:
        outputs = [f"  output {o.name}: {o.container_path} -> runs/<job>/output/{o.name}/" for o in self.spec.outputs]
        return "\n".join(
            self._plan_head(settings, on_sagemaker=False)
            + outputs
            + [
                "  2. Processor(instance_type='local').run(...): one container (local mode cannot shard), "
                f"stopped after MAX_RUN={settings.max_run} s",
                "  3. runs/<job>/report.md + run.json, job.log (also when the job fails or is interrupted)",
            ]
        )

    def sagemaker_plan(self, settings: Settings) -> str:
        from gs_ds_env.data import s3_data

        outputs = [
            f"  output {o.name}: {o.container_path} -> {o.destination or s3_data.uri(settings, 'processing', '<job>', o.name)}"
            for o in self.spec.outputs
        ]
        return "\n".join(
            self._plan_head(settings, on_sagemaker=True)
            + outputs
            + [
                f"  2. local inputs and the code to {s3_data.uri(settings, 'processing-input')}/<name>/<digest>/ "
                "(content-addressed; a file already there is not sent)",
                f"  3. sagemaker:CreateProcessingJob: {settings.instance_count} x {_instance_and_ceiling(settings)}, "
                f"MaxRuntimeInSeconds={settings.max_run}, tags",
                "  4. follow it (Ctrl-C: sagemaker:StopProcessingJob; --detach returns at once, then "
                "`inv job.attach <job>`), its outputs listed in S3, runs/<job>/report.md + run.json",
            ]
        )


def _instance_and_ceiling(settings: Settings) -> str:
    """The instance type as the plan can know it without calling AWS (auto: the cheapest processing type in the price
    table; the run picks from live quotas and prices) and what MAX_RUN bounds the bill at."""
    from gs_ds_env import aws
    from gs_ds_env.aws import instance

    wanted = settings.instance_type
    if wanted == "auto":
        wanted = instance.cheapest_by_table(aws.session(settings), job="processing")
        shown = f"auto (shown as {wanted}, the cheapest in the price table; the run picks by live quota and price)"
    else:
        shown = wanted
    price = instance.PRICE_TABLE.get(wanted)
    if price is None:
        return f"{shown} (no price in the table: the run reads it)"
    ceiling = price * settings.instance_count * settings.max_run / 3600
    return f"{shown} at about {price:.3f} USD/h each: at most {ceiling:.2f} USD (MAX_RUN bound)"
