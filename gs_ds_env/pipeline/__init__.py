"""`inv pipeline.*` and `inv model.*`: a pipeline module (pipelines/<name>.py) built from the project's settings
(context.py: every step in the theme image; definition.py: finding the module, the graph of its steps), run here
with the SDK's LocalPipelineSession (local.py) or on SageMaker Pipelines (remote.py: upsert, start, follow, stop,
schedule, list, delete), one flow for both (run.py), one record per execution with its graph (record.py), and the
model registry its versions go to (registry.py)."""

from gs_ds_env.pipeline.definition import PipelineError

__all__ = ["PipelineError"]
