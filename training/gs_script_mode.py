"""Script mode as AWS's framework images run it: the SageMaker training toolkit imports this module
(SAGEMAKER_TRAINING_MODULE) when the job carries user code and runs the entry point exactly as SageMaker would
(hyperparameters as `--key value`, SM_* variables; nothing added).

The toolkit keeps a failing script's stderr only from a line naming a Python exception on, so a script that
ends with `sys.exit("reason")` or an argparse error left `ErrorMessage ""` in /opt/ml/output/failure. Here the
script's stderr passes through a pipe that keeps its last lines, and a failure carries them, whatever the exit.

A job with the hyperparameter sagemaker_torch_distributed_enabled (what the SDK's PyTorch estimator sets for
distribution={"torch_distributed": {"enabled": True}}; `inv train` sets it for a torch theme on several hosts)
starts the script with torchrun on every host: one process group over all of them, as AWS's PyTorch images do.
"""

from __future__ import annotations

import collections
import logging
import os
import sys
import threading

from sagemaker_training import entry_point, environment, errors, runner

TORCH_DISTRIBUTED = "sagemaker_torch_distributed_enabled"
TAIL_LINES = 20


class StderrTail:
    """fd 2, which the script and its children inherit, goes through a pipe: every byte still reaches the real
    stderr, and the last TAIL_LINES non-empty lines are kept. This process's own logging (the toolkit's long
    "Invoking user script" message) writes to the real stderr directly, so the tail is the script's alone."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self._saved: int | None = os.dup(2)
        own_stderr = os.fdopen(os.dup(self._saved), "w", buffering=1)
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stderr, sys.__stderr__):
                handler.setStream(own_stderr)
        sys.stderr = own_stderr
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._reader = threading.Thread(target=self._pump, args=(read_end, self._saved), daemon=True)
        self._reader.start()

    def _pump(self, read_end: int, real_stderr: int) -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                os.write(real_stderr, chunk)
                pending += chunk
                *complete, pending = pending.split(b"\n")
                self._keep(complete)
        self._keep([pending])

    def _keep(self, raw_lines: list[bytes]) -> None:
        for raw in raw_lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line.strip():
                self.lines.append(line)

    def close(self) -> str:
        """Give fd 2 back (once); the script's last stderr lines, oldest first."""
        if self._saved is not None:
            os.dup2(self._saved, 2)  # the pipe's last write end closes with the script's processes
            self._reader.join(timeout=5)
            self._saved = None
        return "\n".join(self.lines)


def main() -> None:
    env = environment.Environment()
    distributed = bool(env.additional_framework_parameters.get(TORCH_DISTRIBUTED, False))
    tail = StderrTail()
    try:
        entry_point.run(
            uri=env.module_dir,
            user_entry_point=env.user_entry_point,
            args=env.to_cmd_args(),
            env_vars=env.to_env_vars(),
            capture_error=False,  # stderr flows through StderrTail instead, for any kind of exit
            runner_type=runner.TorchDistributedRunnerType if distributed else runner.ProcessRunnerType,
        )
    except errors.ExecuteUserScriptError as error:
        error.output = tail.close() or error.output  # the toolkit writes str(error) to /opt/ml/output/failure
        raise
    finally:
        tail.close()
