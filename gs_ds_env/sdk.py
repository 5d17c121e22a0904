"""The SageMaker SDK (v2), imported once, quietly, with this project's SDK-defaults config.

Every Session gets SDK_CONFIG (telemetry opted out whatever config files exist). The SDK validates a session's
config against its JSON schema at every config lookup, and jsonschema re-checks the SDK's whole schema against
the metaschema each time: ~0.3 s a lookup, 24 lookups for one local-mode job (7.8 s of a 19 s warm `inv deploy`).
SDK_CONFIG is a constant: the SDK's checks of that config are skipped (a test validates it with the SDK's own
function); any other config is still validated every time.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os
import sys
import threading
import time

# Local mode needs a role string and never uses it (training, processing, serving and pipelines here).
LOCAL_ROLE = "arn:aws:iam::000000000000:role/local-mode-unused"
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}
_VALIDATED = copy.deepcopy(SDK_CONFIG)  # compared by value: a session could mutate the dict it was given

# The modules that bound `validate_sagemaker_config` by name at import.
_VALIDATING_MODULES = ("sagemaker.config", "sagemaker.session", "sagemaker.utils", "sagemaker.local.local_session")


def _quiet_loggers() -> None:
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    logging.getLogger("sagemaker.local.image").setLevel(logging.WARNING)  # it dumps the whole compose file
    logging.getLogger("sagemaker.local.utils").setLevel(logging.ERROR)  # "RootlessDocker not detected" per call
    # It logs "To opt out of telemetry…" even when SDK_CONFIG has opted out.
    logging.getLogger("sagemaker.telemetry.telemetry_logging").setLevel(logging.WARNING)
    # The SDK sets its loggers to INFO; botocore then reports every endpoint it resolves from AWS_ENDPOINT_URL.
    logging.getLogger("botocore.configprovider").setLevel(logging.WARNING)


def _skip_validating_project_config() -> None:
    import importlib

    from sagemaker.config import config as config_module

    validate = config_module.validate_sagemaker_config
    if getattr(sys.modules["sagemaker.utils"].validate_sagemaker_config, "skips_project_config", False):
        return

    def validate_unless_project_config(sagemaker_config: dict | None = None) -> None:
        if sagemaker_config != _VALIDATED:
            validate(sagemaker_config)

    validate_unless_project_config.skips_project_config = True
    for name in _VALIDATING_MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "validate_sagemaker_config"):
            module.validate_sagemaker_config = validate_unless_project_config


def _without_iri_grammar() -> None:
    """jsonschema (the SDK's config module imports it) imports rfc3987_syntax when it is installed (jupyter_server's
    jupyter-events brings it into the tool venv), and that module builds its IRI grammar at import: ~1 s of the SDK's
    ~2.6 s import, for the "iri" format no SDK schema uses. Left out of this process unless something imported
    jsonschema already; jsonschema then skips "iri" checks, as where the package is not installed."""
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)


def _load():
    _quiet_loggers()
    _without_iri_grammar()
    # The import makes ~240,000 long-lived objects (sagemaker_core's models most of them): the collector's passes
    # over them while they are made cost ~0.15 s of ~1.3 s and free nothing. Paused for the import only.
    collecting = gc.isenabled()
    gc.disable()
    try:
        import sagemaker as sdk
        import sagemaker.local  # noqa: F401 - local mode's session, which `import sagemaker` leaves out
    finally:
        if collecting:
            gc.enable()
    _skip_validating_project_config()
    _share_botocore_data()
    return sdk


def _share_botocore_data() -> None:
    """The SDK's import made a session (JumpStart's default) that parsed the SageMaker and S3 models: later sessions
    (the job's, the one the Estimator makes from boto3's default) read them from it instead of parsing them again."""
    from gs_ds_env import aws

    jumpstart = sys.modules.get("sagemaker.jumpstart.constants")
    made_at_import = getattr(jumpstart, "DEFAULT_JUMPSTART_SAGEMAKER_SESSION", None)
    aws.share_loader(getattr(made_at_import, "boto_session", None))


_prefetching: threading.Thread | None = None


def prefetch(freeze: bool = False) -> None:
    """Import the SDK (~1.2 s) in a background thread while a run's first steps wait on subprocesses (kernel
    check, image build, parity); `sagemaker()` waits for it. An import error is left for `sagemaker()` to raise.
    `freeze`: a process that ends with its run (the CLI) leaves what the import made out of the collector's later
    passes (gc.freeze: each full pass over it costs ~0.1 s); a notebook kernel lives on and keeps collecting it."""
    global _prefetching
    if _prefetching is None and "sagemaker.local" not in sys.modules:
        # Not a daemon: a process that ends early (a refused argument, Ctrl-C) waits for the import to finish
        # instead of finalizing the interpreter under it, which can crash it (SIGSEGV after the error line).
        _prefetching = threading.Thread(target=_load_quietly, args=(freeze,), name="sagemaker-sdk-import")
        _prefetching.start()


def _load_quietly(freeze: bool) -> None:
    with contextlib.suppress(Exception):  # raised again, in the caller's thread, by sagemaker()
        _load()
        if freeze:
            gc.freeze()


def sagemaker():
    """The SDK module: its v2 deprecation banner silenced, telemetry opted out, SDK_CONFIG not re-validated."""
    if _prefetching is not None:
        _prefetching.join()
    return _load()


def name_from_base(base: str) -> str:
    """`sagemaker.utils.name_from_base` without importing the SDK (~2 s): base trimmed so that base-<timestamp>
    fits SageMaker's 63 characters, then the SDK's millisecond timestamp."""
    stamp = timestamp()
    return f"{base[: 63 - len(stamp) - 1]}-{stamp}"


def timestamp() -> str:
    """`sagemaker.utils.sagemaker_timestamp`: UTC, to the millisecond, e.g. 2026-11-30-02-41-58-937."""
    now = time.time()
    return time.strftime(f"%Y-%m-%d-%H-%M-%S-{int(now * 1000) % 1000:03d}", time.gmtime(now))
