"""The SageMaker SDK (v2), imported quietly: its v2 deprecation banner silenced and telemetry opted out."""

from __future__ import annotations

import logging
import os

# Passed to every Session as its SDK-defaults config, so the opt-out holds whatever config files exist.
SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def sagemaker():
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    logging.getLogger("sagemaker.local.image").setLevel(logging.WARNING)  # it dumps the whole compose file
    # It logs "To opt out of telemetry…" even when SDK_CONFIG has opted out.
    logging.getLogger("sagemaker.telemetry.telemetry_logging").setLevel(logging.WARNING)
    # The SDK sets its loggers to INFO; botocore then reports every endpoint it resolves from AWS_ENDPOINT_URL.
    logging.getLogger("botocore.configprovider").setLevel(logging.WARNING)
    import sagemaker as sdk

    return sdk
