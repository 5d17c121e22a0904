"""What every task module shares: errors as one line and an exit code, numbers from options, AWS settings."""

from __future__ import annotations

import functools
import gc
import math
import subprocess
import sys

from invoke import Collection, Exit

from gs_ds_env.errors import GsError
from gs_ds_env.interrupts import interruptible
from gs_ds_env.settings import ConfigError, load_settings, validate_for_aws


def _aws_error(error: Exception) -> bool:
    """A botocore error the package did not handle. botocore is not imported to ask (`inv --list` never loads it):
    an error of it can only come from a task that did."""
    exceptions, parsers = sys.modules.get("botocore.exceptions"), sys.modules.get("botocore.parsers")
    kinds = tuple(
        k for k in (getattr(exceptions, "BotoCoreError", None), getattr(parsers, "ResponseParserError", None)) if k
    )
    return bool(kinds) and isinstance(error, kinds)


def clear_errors(func):
    """Bad input becomes one line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with interruptible():  # SIGTERM and SIGHUP end a task as Ctrl-C does
                return func(*args, **kwargs)
        except GsError as error:  # one line; 2 for bad input, 1 for what failed (gs_ds_env/errors.py)
            if getattr(error, "details", None):  # a failed job's reason, last lines and hint, before the one line
                print("\n".join(error.details), flush=True)
            raise Exit(f"error: {error}", code=error.exit_code) from None
        except KeyboardInterrupt as interrupted:
            status = getattr(interrupted, "status", "interrupted (Ctrl-C)")
            raise Exit(
                f"error: {status}; what finished is kept, a half-done run says INTERRUPTED",
                code=getattr(interrupted, "exit_code", 130),
            ) from None
        except subprocess.CalledProcessError as error:
            raise Exit(
                f"error: {error.cmd[0]} failed with exit status {error.returncode} (see its output above)",
                code=error.returncode or 1,
            ) from None
        except Exception as error:
            if not _aws_error(error):  # a bug: its traceback stays
                raise
            from gs_ds_env.aws import explain  # outside the package's own handling

            raise Exit(f"error: {explain(error, 'an AWS call')}", code=1) from None
        finally:
            # The process ends with the task: out of the collector's sight, what it created (the SageMaker SDK's
            # import alone makes millions of objects) no longer costs ~0.6 s of collections at exit. Here, not in
            # the package: a notebook kernel that imports it lives on and must keep collecting.
            gc.freeze()

    return wrapper


def sdk_in_background(dry_run: bool) -> None:
    """A run task's first line: the SageMaker SDK imports while the task reads its settings and the run's first
    steps wait on subprocesses. The process ends with the task, so the collector's passes then leave what the import
    made alone (gc.freeze, as clear_errors does at the end). A dry run never imports it."""
    if not dry_run:
        from gs_ds_env import sdk

        sdk.prefetch(freeze=True)


def number(value, option: str, kind: type = float):
    """An option's value as a finite number, or one line saying what to give."""
    try:
        parsed = kind(value)
        if not math.isfinite(parsed):
            raise ValueError(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{option} {value!r} is not a{'' if kind is float else 'n'} {'number' if kind is float else 'integer'}: e.g. {option} 30"
        ) from None
    return parsed


def aws_settings(uses: tuple[str, ...] | None = None, **overrides):
    """Settings for a task that always talks to AWS, whatever TARGET says: the AWS keys it uses (all by default;
    `uses`: only these, e.g. () for a task that reads or deletes SageMaker resources and touches no bucket, repository
    or role) are checked first. TARGET=sagemaker in .env checks them all anyway."""
    settings = load_settings(**overrides)
    validate_for_aws(settings, uses)
    return settings


def group(name: str, *tasks, default=None) -> Collection:
    """A namespace of tasks under their short names (`inv kernel.list`); `default` runs as `inv <name>`."""
    namespace = Collection(name)
    for short, function in tasks:
        namespace.add_task(function, name=short, default=function is default)
    return namespace
