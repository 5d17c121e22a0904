"""Script mode as AWS's framework images run it: the SageMaker training toolkit imports this module
(SAGEMAKER_TRAINING_MODULE) when the job carries user code, and runs the entry point with its stderr captured,
so a failing script's own error lands in /opt/ml/output/failure."""

from sagemaker_training import entry_point, environment, runner


def main() -> None:
    env = environment.Environment()
    entry_point.run(
        uri=env.module_dir,
        user_entry_point=env.user_entry_point,
        args=env.to_cmd_args(),
        env_vars=env.to_env_vars(),
        capture_error=True,
        runner_type=runner.ProcessRunnerType,
    )
