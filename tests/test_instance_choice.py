"""INSTANCE_TYPE=auto and an explicit type, chosen from the account's quotas and prices, with the evidence said.

Service Quotas and the Price List API are not in moto: these tests stub those two clients in-process (botocore's
Stubber).
"""

from __future__ import annotations

import json

import pytest
from aws_fakes import REGION, offline_session, offline_settings
from botocore.stub import Stubber

from gs_ds_env.aws import instance
from gs_ds_env.settings import ConfigError


def quota_client(defaults: dict[str, float], applied: dict[str, float], job: str = "training"):
    client = offline_session().client("service-quotas")
    stub = Stubber(client)
    for operation, values in (("list_aws_default_service_quotas", defaults), ("list_service_quotas", applied)):
        quotas = [
            {"ServiceCode": "sagemaker", "QuotaName": f"{name} for {job} job usage", "Value": value}
            for name, value in values.items()
        ]
        quotas.append({"ServiceCode": "sagemaker", "QuotaName": "Number of training jobs", "Value": 50.0})
        stub.add_response(operation, {"Quotas": quotas}, {"ServiceCode": "sagemaker"})
    stub.activate()
    return client


def pricing_client(products: list[dict] | None):
    client = offline_session().client("pricing", region_name="us-east-1")
    stub = Stubber(client)
    if products is None:
        stub.add_client_error("get_products", "AccessDeniedException", "not authorized to perform pricing:GetProducts")
    else:
        stub.add_response("get_products", {"PriceList": [json.dumps(p) for p in products], "FormatVersion": "aws_v1"})
    stub.activate()
    return client


def product(usage_type: str, usd: str) -> dict:
    return {
        "product": {"productFamily": "ML Instance", "attributes": {"usagetype": usage_type, "regionCode": REGION}},
        "terms": {
            "OnDemand": {
                "SKU.TERM": {"priceDimensions": {"SKU.TERM.RATE": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}
            }
        },
    }


def test_auto_picks_the_cheapest_type_with_quota_and_says_why():
    # Defaults say 0 for m5.large and c5.xlarge; the account has an applied quota of 2 for c5.xlarge.
    quotas = quota_client(
        {"ml.m5.large": 0, "ml.c5.xlarge": 0, "ml.m5.xlarge": 1, "ml.m4.xlarge": 0}, {"ml.c5.xlarge": 2}
    )
    choice = instance.choose(offline_settings(), offline_session(), quotas, pricing_client(None))
    assert choice.instance_type == "ml.c5.xlarge" and choice.price == 0.204
    assert "quota 2" in choice.reason and f"table us-east-1 {instance.PRICE_TABLE_DATE}" in choice.reason
    table = choice.table()
    assert "| 1 | ml.c5.xlarge | 2 | 0.204 |" in table and "**picked**" in table
    assert "| ml.m5.large | 0 | 0.115 |" in table and "quota 0" in table
    assert not any(row.instance_type.startswith("ml.g") for row in choice.rows)  # CPU-only image


def test_unreadable_quotas_are_called_unknown_not_above_zero():
    client = offline_session().client("service-quotas")
    stub = Stubber(client)
    for operation in ("list_aws_default_service_quotas", "list_service_quotas"):
        stub.add_client_error(operation, "AccessDeniedException", "not authorized to perform servicequotas:List")
    stub.activate()
    choice = instance.choose(offline_settings(), offline_session(), client, pricing_client(None))
    assert choice.instance_type == "ml.m5.large"
    assert "quota is UNKNOWN" in choice.reason and "quota above 0" not in choice.reason
    assert any("training quotas UNKNOWN" in warning for warning in choice.warnings)


def test_a_processing_job_is_picked_by_processing_quotas_and_prices():
    """Service Quotas and the Price List name processing apart from training (Stubber: moto has neither)."""
    quotas = quota_client({"ml.m5.large": 0, "ml.c5.xlarge": 0, "ml.m5.xlarge": 2}, {}, job="processing")
    products = [product("EU-Processing:ml.m5.xlarge", "0.2700000000"), product("EU-Train:ml.m5.xlarge", "0.2500000000")]
    choice = instance.choose(offline_settings(), offline_session(), quotas, pricing_client(products), job="processing")
    assert choice.instance_type == "ml.m5.xlarge" and choice.price == 0.27
    assert "CreateProcessingJob accepts with a processing quota above 0" in choice.reason
    assert "quota (processing)" in choice.table() and "(ProcessingInstanceType)" in choice.evidence()
    # Training quotas say nothing about processing: with none for processing the quota is UNKNOWN, never assumed.
    training_only = quota_client({"ml.m5.large": 4}, {})
    unknown = instance.choose(
        offline_settings(), offline_session(), training_only, pricing_client(None), job="processing"
    )
    assert "its processing quota is UNKNOWN" in unknown.reason
    assert any("processing quotas UNKNOWN" in warning for warning in unknown.warnings)


def test_price_list_api_prices_win_over_the_table():
    products = [
        product("EU-Train:ml.m5.large", "0.1340000000"),
        product("EU-Host:ml.m5.large", "0.0100000000"),
        product("EU-Train:ml.m5.xlarge", "0.2690000000"),
    ]
    quotas = quota_client({"ml.m5.large": 1, "ml.m5.xlarge": 1}, {})
    choice = instance.choose(offline_settings(), offline_session(), quotas, pricing_client(products))
    assert choice.instance_type == "ml.m5.large"
    assert choice.price == 0.134  # the training price, not the hosting one
    assert "Price List API eu-west-1" in choice.reason


def test_zero_quota_stops_before_the_job():
    with pytest.raises(
        ConfigError,
        match=r"INSTANCE_TYPE=ml.m5.large has a training quota of 0 in eu-west-1: "
        r"the job would fail with ResourceLimitExceeded",
    ):
        instance.choose(
            offline_settings(instance_type="ml.m5.large"),
            offline_session(),
            quota_client({"ml.m5.large": 0, "ml.c5.xlarge": 1}, {}),
            pricing_client(None),
        )
    with pytest.raises(ConfigError, match="no CPU training instance type has a quota above 0 in eu-west-1"):
        instance.choose(
            offline_settings(), offline_session(), quota_client({"ml.m5.large": 0}, {}), pricing_client(None)
        )


def test_explicit_types_are_checked_against_the_same_evidence():
    with pytest.raises(ConfigError, match=r"INSTANCE_TYPE=ml.m5.tiny is not a training instance type .* ml.m5.large"):
        instance.choose(
            offline_settings(instance_type="ml.m5.tiny"), offline_session(), quota_client({}, {}), pricing_client(None)
        )
    choice = instance.choose(
        offline_settings(instance_type="ml.m5.2xlarge"),
        offline_session(),
        quota_client({"ml.m5.large": 1, "ml.m5.2xlarge": 1}, {}),
        pricing_client(None),
    )
    assert choice.instance_type == "ml.m5.2xlarge"
    assert choice.warnings == [
        "ml.m5.2xlarge costs 0.461 USD/h; ml.m5.large would do at 0.115 USD/h (INSTANCE_TYPE=auto)"
    ]
