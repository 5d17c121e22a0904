"""What a pipeline module (pipelines/<name>.py) gets to build the SDK's `Pipeline`: the settings, the session (the
SDK's LocalPipelineSession, or a PipelineSession on SageMaker), the theme image every step runs in, the role, and
steps made the project's way, the same on both targets:

- `process_step`: a script in the theme image as SageMaker Processing runs it (`inv process`'s contract: inputs at
  /opt/ml/processing/input/<name>, outputs from /opt/ml/processing/output/<name>, exactly its arguments);
- `train_step`: the image's own program (Titanic) or a script-mode entry point, its channels from earlier steps;
- `model_steps`: the trained model as a SageMaker model, batch-predicting an input (TransformStep);
- `register_steps`: the model in a model package group with its evaluation as its metrics (SageMaker); local
  mode has no model registry, so the runner records the version under runs/model-registry/ instead, and says so.

Where data goes: locally under runs/<execution>/steps/<step>/<output>/ (file://, no account); on SageMaker under
<prefix>/pipelines/<pipeline>/<execution id>/<step>/<output>/ (every execution its own). Code and local input
files are uploaded content-addressed on SageMaker (<prefix>/pipeline-code/, <prefix>/pipeline-input/), once.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env.job.processing import CODE_INPUT, CONTAINER_INPUT, CONTAINER_OUTPUT
from gs_ds_env.settings import Settings

CACHE_EXPIRY = "P30D"  # a step whose inputs did not change in 30 days is not run again (SageMaker only)


@dataclass
class Registration:
    """What register_steps asked for: the group, the model's training step, the evaluation's property file. On
    SageMaker the RegisterModel step does it; locally the runner does it after a successful execution."""

    group: str
    train_step: str
    evaluate_step: str
    property_file: str
    gate: str  # the condition step whose true branch holds the registration


@dataclass
class PipelineContext:
    settings: Settings
    name: str  # the SageMaker pipeline name: <BASE_JOB_NAME>-<module>
    session: object  # LocalPipelineSession (local) or PipelineSession (sagemaker)
    image_uri: str
    role: str
    local: bool
    local_base: Path | None = None  # local: runs/<execution>/steps
    uploads: dict[str, str] = field(default_factory=dict)  # local path -> s3:// URI (SageMaker), filled as used
    upload: object = None  # (kind, local path) -> s3:// URI; dry runs give the planned URI without sending
    registrations: list[Registration] = field(default_factory=list)

    # ---- where things are -------------------------------------------------------------------------------------
    def output(self, step: str, name: str):
        """Where a step's output goes: a folder of this execution's."""
        if self.local:
            return f"file://{self.local_base / step / name}"
        from sagemaker.workflow.execution_variables import ExecutionVariables
        from sagemaker.workflow.functions import Join

        from gs_ds_env.data import s3_data

        base = s3_data.uri(self.settings, "pipelines", self.name)
        return Join(on="/", values=[base, ExecutionVariables.PIPELINE_EXECUTION_ID, step, name])

    def data(self, path: str | Path) -> str:
        """A local file or folder as a step's input: file:// locally, uploaded (content-addressed) on SageMaker;
        an s3:// URI as it is."""
        if str(path).startswith("s3://"):
            return str(path)
        resolved = Path(path).expanduser().resolve()
        if not self.local:
            return self._uploaded("pipeline-input", resolved)
        if resolved.is_file() and self.local_base.parent.is_dir():
            # Local mode mounts a file's whole folder: the file alone, linked into this execution's inputs/
            staged = self.local_base.parent / "inputs" / resolved.stem / resolved.name
            staged.parent.mkdir(parents=True, exist_ok=True)
            try:
                staged.hardlink_to(resolved)
            except OSError:
                shutil.copy2(resolved, staged)
            return f"file://{staged.parent}"
        return f"file://{resolved}"

    def code(self, folder: str | Path) -> str:
        resolved = Path(folder).expanduser().resolve()
        return f"file://{resolved}" if self.local else self._uploaded("pipeline-code", resolved)

    def _uploaded(self, area: str, path: Path) -> str:
        if str(path) not in self.uploads:
            self.uploads[str(path)] = self.upload(area, path)
        return self.uploads[str(path)]

    # ---- steps ------------------------------------------------------------------------------------------------
    def process_step(
        self,
        name: str,
        script: str | Path,
        inputs: dict | None = None,
        outputs: list[str] = (),
        arguments: list[str] = (),
        property_files: list = (),
        instance_type=None,
        cache: bool = True,
    ):
        """A ProcessingStep: `script` (its folder is the code) in the theme image, `inputs` {name: source} (a step's
        property, a parameter, or `data(path)`), `outputs` by name."""
        from sagemaker.processing import ProcessingInput, ProcessingOutput
        from sagemaker.workflow.steps import CacheConfig, ProcessingStep

        from gs_ds_env.job.processing_job import processor_class

        script = Path(script)
        processor = processor_class()(
            role=self.role,
            image_uri=self.image_uri,
            instance_count=1,
            instance_type="local" if self.local else (instance_type or self._instance_type()),
            entrypoint=["python3", f"{CONTAINER_INPUT}/{CODE_INPUT}/{script.name}"],
            sagemaker_session=self.session,
            base_job_name=f"{self.settings.base_job_name}-{name}",
            max_runtime_in_seconds=None if self.local else self.settings.max_run,
            tags=self._tags(),
        )
        step_args = processor.run(
            inputs=[
                ProcessingInput(source=self.code(script.parent), destination=f"{CONTAINER_INPUT}/{CODE_INPUT}",
                                input_name=CODE_INPUT),
                *(ProcessingInput(source=source, destination=f"{CONTAINER_INPUT}/{input_name}", input_name=input_name)
                  for input_name, source in (inputs or {}).items()),
            ],
            outputs=[
                ProcessingOutput(source=f"{CONTAINER_OUTPUT}/{output}", destination=self.output(name, output),
                                 output_name=output)
                for output in outputs
            ],
            arguments=list(arguments) or None,
        )  # fmt: skip
        return ProcessingStep(
            name,
            step_args=step_args,
            property_files=list(property_files) or None,
            cache_config=CacheConfig(enable_caching=cache, expire_after=CACHE_EXPIRY),
        )

    def train_step(self, name: str, channels: dict, instance_type=None):
        """A TrainingStep: the theme image's own program (the Titanic program for tabular) on `channels`
        {channel: source}, with the settings' hyperparameters (MODEL, N_ESTIMATORS, ...) and seed."""
        from sagemaker.inputs import TrainingInput
        from sagemaker.workflow.steps import CacheConfig, TrainingStep

        from gs_ds_env.job import training_job

        settings = self.settings.replace(instance_count=1)
        estimator = training_job.estimator(
            settings, self.image_uri, self.session, local=self.local, role=self.role,
            output_path=self.output(name, "model") if self.local else self._model_output(),
            instance_type=instance_type or self._instance_type(),
        )  # fmt: skip
        step_args = estimator.fit({channel: TrainingInput(source) for channel, source in channels.items()})
        return TrainingStep(name, step_args=step_args, cache_config=CacheConfig(enable_caching=True,
                                                                                expire_after=CACHE_EXPIRY))  # fmt: skip

    def model_steps(self, name: str, train_step, data, content_type: str = "text/csv", instance_type=None) -> list:
        """The trained model as a SageMaker model (ModelStep) and a batch transform of `data` (TransformStep),
        one record a line in and out, as SageMaker's batch format has it."""
        from sagemaker.model import Model
        from sagemaker.transformer import Transformer
        from sagemaker.workflow.model_step import ModelStep
        from sagemaker.workflow.steps import TransformStep

        model = Model(
            image_uri=self.image_uri, model_data=train_step.properties.ModelArtifacts.S3ModelArtifacts,
            role=self.role, sagemaker_session=self.session,
        )  # fmt: skip
        create = ModelStep(f"{name}-model", step_args=model.create(instance_type="local" if self.local else None))
        transformer = Transformer(
            model_name=create.properties.ModelName, instance_count=1,
            instance_type="local" if self.local else (instance_type or self._instance_type()),
            output_path=self.output(name, "predictions"), accept=content_type, strategy="MultiRecord",
            assemble_with="Line", sagemaker_session=self.session, tags=self._tags(),
        )  # fmt: skip
        transform = TransformStep(
            name, step_args=transformer.transform(data=data, content_type=content_type, split_type="Line")
        )
        return [create, transform]

    def register_steps(self, name: str, train_step, evaluate_step, property_file, gate: str) -> list:
        """The model in the model package group <pipeline> with evaluation.json as its metrics (SageMaker's Model
        Registry, pending manual approval); locally [] (recorded by the runner)."""
        group = self.name
        self.registrations.append(Registration(group, train_step.name, evaluate_step.name, property_file.name, gate))
        if self.local:
            return []
        from sagemaker.model import Model
        from sagemaker.model_metrics import MetricsSource, ModelMetrics
        from sagemaker.workflow.functions import Join
        from sagemaker.workflow.model_step import ModelStep

        report = evaluate_step.properties.ProcessingOutputConfig.Outputs[property_file.output_name].S3Output.S3Uri
        metrics = ModelMetrics(
            model_statistics=MetricsSource(
                s3_uri=Join(on="/", values=[report, property_file.path]), content_type="application/json"
            )
        )
        model = Model(
            image_uri=self.image_uri, model_data=train_step.properties.ModelArtifacts.S3ModelArtifacts,
            role=self.role, sagemaker_session=self.session,
        )  # fmt: skip
        step_args = model.register(
            content_types=["text/csv", "application/json"], response_types=["text/csv", "application/json"],
            inference_instances=["ml.m5.large"], transform_instances=["ml.m5.large"], model_package_group_name=group,
            approval_status="PendingManualApproval", model_metrics=metrics,
            customer_metadata_properties={"gs-ds-env:theme": self.settings.theme, "gs-ds-env:py": self.settings.py},
        )  # fmt: skip
        return [ModelStep(name, step_args=step_args)]

    # ---- what every step shares -------------------------------------------------------------------------------
    def _instance_type(self) -> str:
        return "ml.m5.large" if self.settings.instance_type == "auto" else self.settings.instance_type

    def _model_output(self) -> str:
        from gs_ds_env.data import s3_data

        return s3_data.uri(self.settings, "pipelines", self.name, "models")

    def _tags(self) -> list[dict] | None:
        if self.local:
            return None
        return [{"Key": k, "Value": v} for k, v in self.settings.tags.items()] or None
