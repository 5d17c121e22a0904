"""`inv data.*`: the Titanic data fetched, verified, split and staged (titanic.py); channels and models uploaded to
S3 for SageMaker (s3_data.py)."""

from gs_ds_env.data.titanic import (
    CHANNELS,
    TITANIC_THEME,
    DataError,
    StagedData,
    fetch,
    load,
    sha256_of,
    split_and_stage,
)

__all__ = ["CHANNELS", "TITANIC_THEME", "DataError", "StagedData", "fetch", "load", "sha256_of", "split_and_stage"]
