"""`inv job.*`: one run flow (deploy.py: a program on a target) over two targets (targets.py: local mode, SageMaker),
the Estimator both share (training_job.py) and each target's side (local_job.py, sagemaker_job.py), script mode
(script_mode.py), processing jobs (processing.py: inputs, outputs, arguments; processing_job.py: the SDK's Processor
on either target), plans printed before a run (plans.py), the run record after it (report.py, versions.py,
metrics.py), and notebooks run under nbclient (notebook.py)."""
