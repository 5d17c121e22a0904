"""Script mode as AWS's framework images run it: the SageMaker training toolkit imports this module
(SAGEMAKER_TRAINING_MODULE) when the job carries user code, and runs the entry point with its stderr captured,
so a failing script's own error lands in /opt/ml/output/failure.

A job with the hyperparameter sagemaker_torch_distributed_enabled (what the SDK's PyTorch estimator sets for
distribution={"torch_distributed": {"enabled": True}}; `inv train` sets it for a torch theme on several hosts)
starts the script with torchrun on every host: one process group over all of them, as AWS's PyTorch images do.
"""

from sagemaker_training import entry_point, environment, runner

TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"


def main() -> None:
    env = environment.Environment()
    distributed = bool(env.additional_framework_parameters.get(TORCH_DISTRIBUTED, False))
    entry_point.run(
        uri=env.module_dir,
        user_entry_point=env.user_entry_point,
        args=env.to_cmd_args(),
        env_vars=env.to_env_vars(),
        capture_error=True,
        runner_type=runner.TorchDistributedRunnerType if distributed else runner.ProcessRunnerType,
    )
