"""`inv serve.*` and `inv endpoint.*`: the theme image that trained a model answers predictions with it.

model_source.py  which model (a run, a model.tar.gz, an S3 URI), with which code, and the image it was trained in
prepare.py       the model folder as SageMaker mounts it, its code placed as the SDK repacks it, `serve --check`
local.py         a local endpoint through the SDK's local mode (Model(...).deploy(instance_type="local"))
local_mode.py    where the SDK's local mode serves otherwise than SageMaker, patched while it serves
predict.py       one request to an endpoint, local or on SageMaker, through the same invoke_endpoint interface
transform.py     batch predictions over files (the SDK's Transformer), locally or on SageMaker
endpoint.py      SageMaker endpoints: deploy (sized, tagged), list (with their cost), delete
report.py        the served model's page beside its run
The server itself lives in the image: training/gs_serving (the SageMaker inference contract).
"""

from gs_ds_env.errors import ServeError

__all__ = ["ServeError"]
