"""`inv studio-image` against SageMaker's API as botocore's Stubber plays it: moto implements none of CreateImage,
CreateImageVersion, CreateAppImageConfig or UpdateDomain. The Stubber checks each request against the service
model and that the calls come in exactly this order with exactly these parameters; an unexpected call fails."""

from __future__ import annotations

import subprocess
import urllib.error
from pathlib import Path

import boto3
import pytest
from aws_fakes import REPOSITORY, inv, operations, sagemaker_env
from botocore.stub import ANY, Stubber
from conftest import INV, copy_repo, tool_env

from gs_ds_env.aws import iam
from gs_ds_env.settings import ConfigError, load_settings
from gs_ds_env.workspace import WorkspaceError, studio

REGION = "eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/gs-ds-env-sagemaker"
URI = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/gs-ds-env-tabular:tabular_311-workspace-0123456789ab"
NAME = "gs-ds-env-tabular-py311"
IMAGE_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:image/{NAME}"
CONFIG_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:app-image-config/{NAME}"
DOMAIN = "d-abcdef123456"
OTHER_IMAGE = {"ImageName": "team-r-image", "AppImageConfigName": "team-r-config"}
SPEC = {"InstanceType": "ml.t3.medium"}
OWN_TAGS = [{"Key": "project", "Value": "titanic"}, {"Key": studio.OWNER_TAG, "Value": "tabular_311"}]


@pytest.fixture
def settings(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKING_DIR", str(tmp_path / "work"))
    repo = copy_repo(tmp_path / "repo", "themes", "docker", ".env.example")
    return load_settings(
        repo_root=repo, target="sagemaker", aws_region=REGION, s3_bucket="team-bucket", sagemaker_role_arn=ROLE,
        ecr_repository="gs-ds-env-tabular", base_job_name="gs-ds-env", theme="tabular", py="3.11",
        tags={"project": "titanic"},
    )  # fmt: skip


def stubbed():
    client = boto3.Session(region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t").client("sagemaker")
    return client, Stubber(client)


def missing(stub: Stubber, operation: str, params: dict) -> None:
    stub.add_client_error(operation, "ResourceNotFound", "not found", expected_params=params)


def image(status: str) -> dict:
    return {"ImageName": NAME, "ImageArn": IMAGE_ARN, "ImageStatus": status}


def version(number: int, status: str, base: str = URI, reason: str | None = None) -> dict:
    answer = {"ImageArn": IMAGE_ARN, "ImageVersionArn": f"arn:aws:sagemaker:{REGION}:123456789012:image-version/{NAME}/{number}",
              "ImageVersionStatus": status, "Version": number, "BaseImage": base}  # fmt: skip
    return {**answer, "FailureReason": reason} if reason else answer


JUPYTERLAB = {"JupyterLabAppImageConfig": {"ContainerConfig": {"ContainerEntrypoint": [studio.ENTRY_POINT]}}}


def domain(images: list[dict]) -> dict:
    return {"DomainId": DOMAIN, "DefaultUserSettings": {"JupyterLabAppSettings": {"DefaultResourceSpec": SPEC, "CustomImages": images}}}  # fmt: skip


def test_a_first_publish_makes_image_version_config_and_offers_it_in_the_domain_keeping_its_settings(settings):
    sm, stub = stubbed()
    missing(stub, "describe_image", {"ImageName": NAME})
    stub.add_response("create_image", {"ImageArn": IMAGE_ARN}, {
        "ImageName": NAME, "RoleArn": ROLE, "DisplayName": "Python 3.11 (tabular)",
        "Description": "gs-ds-env workspace: theme tabular, Python 3.11", "Tags": OWN_TAGS})  # fmt: skip
    stub.add_response("describe_image", image("CREATING"), {"ImageName": NAME})
    stub.add_response("describe_image", image("CREATED"), {"ImageName": NAME})
    missing(stub, "describe_image_version", {"ImageName": NAME})
    stub.add_response(
        "create_image_version", {"ImageVersionArn": version(1, "CREATING")["ImageVersionArn"]},
        {"ImageName": NAME, "BaseImage": URI, "ClientToken": ANY},
    )  # fmt: skip
    for status in ("CREATING", "CREATING", "CREATED"):
        stub.add_response("describe_image_version", version(1, status), {"ImageName": NAME, "Version": 1})
    missing(stub, "describe_app_image_config", {"AppImageConfigName": NAME})
    stub.add_response("create_app_image_config", {"AppImageConfigArn": CONFIG_ARN},
                      {"AppImageConfigName": NAME, "Tags": OWN_TAGS, **JUPYTERLAB})  # fmt: skip
    stub.add_response("describe_domain", domain([OTHER_IMAGE]), {"DomainId": DOMAIN})
    # UpdateDomain replaces the app settings object: the domain's own default instance and image are sent back.
    stub.add_response("update_domain", {"DomainArn": "arn"}, {"DomainId": DOMAIN, "DefaultUserSettings": {
        "JupyterLabAppSettings": {"DefaultResourceSpec": SPEC, "CustomImages": [
            OTHER_IMAGE, {"ImageName": NAME, "AppImageConfigName": NAME}]}}})  # fmt: skip
    slept = []
    with stub:
        done = studio.publish(settings, sm, studio.StudioImage.of(settings), URI, DOMAIN, sleep=slept.append, poll=7)
        stub.assert_no_pending_responses()
    assert done == [
        f"image {NAME}: created",
        f"version 1: created from {URI}",
        f"app image config {NAME}: created",
        f"domain {DOMAIN}: offers {NAME} (pick it for a jupyterlab space)",
    ]
    assert slept == [7, 7, 7]  # once for the image, twice for the version


def test_a_re_run_with_nothing_changed_creates_nothing(settings):
    sm, stub = stubbed()
    stub.add_response("describe_image", image("CREATED"), {"ImageName": NAME})
    stub.add_response("describe_image", image("CREATED"), {"ImageName": NAME})
    stub.add_response("describe_image_version", version(3, "CREATED"), {"ImageName": NAME})
    stub.add_response("describe_image_version", version(3, "CREATED"), {"ImageName": NAME, "Version": 3})
    stub.add_response("describe_app_image_config", {"AppImageConfigName": NAME, "AppImageConfigArn": CONFIG_ARN, **JUPYTERLAB},
                      {"AppImageConfigName": NAME})  # fmt: skip
    stub.add_response(
        "describe_domain", domain([{"ImageName": NAME, "AppImageConfigName": NAME}]), {"DomainId": DOMAIN}
    )
    with stub:  # any Create*/Update* call would be unexpected: the Stubber raises
        done = studio.publish(settings, sm, studio.StudioImage.of(settings), URI, DOMAIN, sleep=pytest.fail)
        stub.assert_no_pending_responses()
    assert done == [f"image {NAME}: exists", f"version 3: already holds {URI}",
                    f"app image config {NAME}: unchanged", f"domain {DOMAIN}: already offers {NAME}"]  # fmt: skip


def test_a_new_lock_makes_a_new_version_and_a_changed_config_is_updated(settings):
    sm, stub = stubbed()
    studio_image = studio.StudioImage.of(settings, "kernel-gateway")
    old_uri = URI.replace("0123456789ab", "ffffffffffff")
    stub.add_response("describe_image", image("CREATED"), {"ImageName": NAME})
    stub.add_response("describe_image", image("CREATED"), {"ImageName": NAME})
    stub.add_response("describe_image_version", version(3, "CREATED", base=old_uri), {"ImageName": NAME})
    stub.add_response("create_image_version", {"ImageVersionArn": version(4, "CREATING")["ImageVersionArn"]},
                      {"ImageName": NAME, "BaseImage": URI, "ClientToken": ANY})  # fmt: skip
    stub.add_response("describe_image_version", version(4, "CREATED"), {"ImageName": NAME, "Version": 4})
    stub.add_response(
        "describe_app_image_config", {"AppImageConfigName": NAME, **JUPYTERLAB}, {"AppImageConfigName": NAME}
    )
    # Studio Classic: the theme's kernel by its name in the image, Studio's uid/gid and home.
    classic = {"KernelGatewayImageConfig": {
        "KernelSpecs": [{"Name": "tabular_311", "DisplayName": "Python 3.11 (tabular)"}],
        "FileSystemConfig": {"MountPath": "/home/sagemaker-user", "DefaultUid": 1000, "DefaultGid": 100}}}  # fmt: skip
    stub.add_response(
        "update_app_image_config", {"AppImageConfigArn": CONFIG_ARN}, {"AppImageConfigName": NAME, **classic}
    )
    with stub:
        done = studio.publish(settings, sm, studio_image, URI, sleep=pytest.fail)
        stub.assert_no_pending_responses()
    assert done[1:3] == [f"version 4: created from {URI}", f"app image config {NAME}: updated"]
    assert done[3] == "attach it to a Studio domain: inv studio-image --theme tabular --domain-id <d-...>"


def test_a_failed_version_stops_with_sagemakers_reason_in_one_line(settings):
    sm, stub = stubbed()
    stub.add_response("describe_image", image("CREATED"), {"ImageName": NAME})
    stub.add_response("describe_image", image("CREATED"), {"ImageName": NAME})
    missing(stub, "describe_image_version", {"ImageName": NAME})
    stub.add_response("create_image_version", {"ImageVersionArn": version(1, "CREATING")["ImageVersionArn"]},
                      {"ImageName": NAME, "BaseImage": URI, "ClientToken": ANY})  # fmt: skip
    reason = "Unable to pull image: access denied for the role"
    stub.add_response(
        "describe_image_version", version(1, "CREATE_FAILED", reason=reason), {"ImageName": NAME, "Version": 1}
    )
    with stub, pytest.raises(WorkspaceError) as failed:
        studio.publish(settings, sm, studio.StudioImage.of(settings), URI, sleep=pytest.fail)
    assert str(failed.value) == f"version 1 of image {NAME} is CREATE_FAILED: {reason}"


def both_exist(stub: Stubber) -> None:
    """What delete looks up first: the image and the app image config, both there."""
    stub.add_response("describe_image", image("CREATED"), {"ImageName": NAME})
    stub.add_response(
        "describe_app_image_config",
        {"AppImageConfigName": NAME, "AppImageConfigArn": CONFIG_ARN},
        {"AppImageConfigName": NAME},
    )


def test_delete_refuses_what_it_did_not_tag_before_deleting_anything(settings):
    sm, stub = stubbed()
    both_exist(stub)
    stub.add_response("list_tags", {"Tags": [{"Key": "team", "Value": "r"}]}, {"ResourceArn": IMAGE_ARN})
    with stub, pytest.raises(WorkspaceError, match="has no gs-ds-env:studio-image tag"):
        studio.delete(sm, studio.StudioImage.of(settings), DOMAIN)
    stub.assert_no_pending_responses()


def test_delete_removes_the_domain_entry_the_config_and_the_image_and_a_second_delete_finds_nothing(settings):
    sm, stub = stubbed()
    both_exist(stub)
    stub.add_response("list_tags", {"Tags": OWN_TAGS}, {"ResourceArn": IMAGE_ARN})
    stub.add_response("list_tags", {"Tags": OWN_TAGS}, {"ResourceArn": CONFIG_ARN})
    stub.add_response(
        "describe_domain", domain([OTHER_IMAGE, {"ImageName": NAME, "AppImageConfigName": NAME}]), {"DomainId": DOMAIN}
    )
    stub.add_response("update_domain", {"DomainArn": "arn"}, {"DomainId": DOMAIN, "DefaultUserSettings": {
        "JupyterLabAppSettings": {"DefaultResourceSpec": SPEC, "CustomImages": [OTHER_IMAGE]}}})  # fmt: skip
    stub.add_response("delete_app_image_config", {}, {"AppImageConfigName": NAME})
    stub.add_response("delete_image", {}, {"ImageName": NAME})
    missing(stub, "describe_image", {"ImageName": NAME})
    missing(stub, "describe_app_image_config", {"AppImageConfigName": NAME})
    with stub:
        first = studio.delete(sm, studio.StudioImage.of(settings), DOMAIN)
        second = studio.delete(sm, studio.StudioImage.of(settings))
        stub.assert_no_pending_responses()
    assert first == [f"domain {DOMAIN}: no longer offers {NAME}", f"app image config {NAME}: deleted",
                     f"image {NAME}: deleted with its versions"]  # fmt: skip
    assert second == [f"app image config {NAME}: not there", f"image {NAME}: not there"]


def test_names_fit_sagemakers_rules_and_two_long_themes_never_share_one(settings):
    import re
    import shutil

    base = "a-very-long-base-job-name-of-38-chars"
    names = set()
    for theme in ("forecasting-with-a-long-name-one", "forecasting-with-a-long-name-two"):
        # Real themes of those names (settings refuse a theme that does not exist), validated as a user's would be.
        shutil.copytree(settings.paths.theme("tabular").root, settings.paths.theme(theme).root)
        long = settings.replace(base_job_name=base, theme=theme)
        name = studio.StudioImage.of(long).name
        assert len(name) <= 63 and re.fullmatch(r"[a-zA-Z0-9]([-.]?[a-zA-Z0-9]){0,62}", name), name
        names.add(name)
    assert len(names) == 2
    with pytest.raises(ConfigError, match="--app 'vscode'"):
        studio.StudioImage.of(settings, "vscode")


def test_the_operator_policy_allows_exactly_the_studio_calls_on_this_projects_names(settings):
    statements = {s["Sid"]: s for s in iam.operator_policy(settings, "123456789012")["Statement"]}
    prefix = f"arn:aws:sagemaker:{REGION}:123456789012"
    assert statements["StudioImages"]["Resource"] == [
        f"{prefix}:image/gs-ds-env*", f"{prefix}:image-version/gs-ds-env*/*", f"{prefix}:app-image-config/gs-ds-env*"
    ]  # fmt: skip
    # What gs_ds_env/workspace/studio.py calls on its SageMaker client, read from its code (every `sm.<method>`, called
    # or handed to a helper) and named as IAM names them, plus AddTags for a call that tags what it creates: the policy
    # allows exactly these, so a new call without its permission fails here.
    import ast

    tree = ast.parse(Path(studio.__file__).read_text())
    methods = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sm"
    }
    tags = any(isinstance(n, ast.Call) and any(k.arg == "Tags" for k in n.keywords) for n in ast.walk(tree))
    api = boto3.Session(region_name=REGION).client("sagemaker").meta.method_to_api_mapping
    called = {f"sagemaker:{api[method]}" for method in methods if method in api} | (
        {"sagemaker:AddTags"} if tags else set()
    )
    assert called and {m for m in methods if m not in api} == set()
    allowed = set(statements["StudioImages"]["Action"]) | set(statements["StudioDomain"]["Action"])
    assert allowed == called, (allowed - called, called - allowed)
    # CreateImage passes the execution role to SageMaker: the one PassRole statement covers it.
    assert statements["PassOnlyTheExecutionRoleToSageMaker"]["Resource"] == ROLE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--domain-id", "xyz"], "error: --domain-id 'xyz' is not a Studio domain id (d- and 12 letters/digits)"),
        (["--app", "vscode"], "error: --app 'vscode': use jupyterlab (Studio) or kernel-gateway (Studio Classic)"),
    ],
)
def test_bad_options_get_one_line_and_exit_2_before_anything_runs(tmp_path, args, message):
    from conftest import clone_project

    project = clone_project(tmp_path / "project")
    env = tool_env(TARGET="sagemaker", AWS_REGION=REGION, S3_BUCKET="team-bucket", SAGEMAKER_ROLE_ARN=ROLE,
                   WORKING_DIR=str(tmp_path / "work"), AWS_ENDPOINT_URL="http://127.0.0.1:9")  # fmt: skip
    result = subprocess.run([INV, "studio-image", *args], cwd=project, env=env, capture_output=True, text=True)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith(message) and result.stdout == ""


@pytest.mark.docker
@pytest.mark.slow
def test_studio_image_pushes_the_workspace_image_then_makes_the_studio_objects_and_its_dry_run_calls_nothing(
    tmp_path, project, moto, registry, base_image, titanic_csv, monkeypatch, capsys
):
    """`inv studio-image`: the workspace image goes to the real registry as the training image does (ECR's half to
    moto); the SageMaker half (CreateImage ... UpdateDomain, which moto lacks) to botocore's Stubber, which checks
    that the version is made from exactly the pushed image."""
    from botocore.stub import ANY, Stubber

    from gs_ds_env.aws import session as aws_session
    from gs_ds_env.settings import load_settings
    from gs_ds_env.workspace import studio

    env = sagemaker_env(tmp_path, moto, base_image, titanic_csv, ECR_REGISTRY=registry.host, BASE_JOB_NAME="gs-studio")
    moto.reset_recording()
    plan = inv(project, env, "studio-image", "--domain-id", "d-abcdef123456", "--dry-run")
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert moto.calls() == [] and workspace_tags(registry) == []
    assert "sagemaker:CreateImage gs-studio-tabular-py311" in plan.stdout
    assert "sagemaker:UpdateDomain d-abcdef123456" in plan.stdout
    planned_uri = plan.stdout.split("  image: ", 1)[1].split()[0]
    assert planned_uri.startswith(f"{registry.host}/{REPOSITORY}:tabular_311-workspace-")

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(repo_root=project)
    sm = studio._sagemaker(aws_session(settings))
    stub = Stubber(sm)
    name = "gs-studio-tabular-py311"
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:image/{name}"
    stub.add_client_error("describe_image", "ResourceNotFound", "no such image", expected_params={"ImageName": name})
    stub.add_response("create_image", {"ImageArn": arn}, {"ImageName": name, "RoleArn": ROLE, "DisplayName": ANY,
                      "Description": ANY, "Tags": [{"Key": "project", "Value": "gs-ds-env"}, {"Key": "gs-ds-env:studio-image", "Value": "tabular_311"}]})  # fmt: skip
    stub.add_response("describe_image", {"ImageName": name, "ImageStatus": "CREATED"}, {"ImageName": name})
    stub.add_client_error("describe_image_version", "ResourceNotFound", "none", expected_params={"ImageName": name})
    stub.add_response("create_image_version", {"ImageVersionArn": f"{arn.replace(':image/', ':image-version/')}/1"},
                      {"ImageName": name, "BaseImage": planned_uri, "ClientToken": ANY})  # fmt: skip
    stub.add_response(
        "describe_image_version", {"ImageVersionStatus": "CREATED", "Version": 1}, {"ImageName": name, "Version": 1}
    )
    stub.add_client_error(
        "describe_app_image_config", "ResourceNotFound", "none", expected_params={"AppImageConfigName": name}
    )
    stub.add_response(
        "create_app_image_config", {}, {"AppImageConfigName": name, "Tags": ANY, "JupyterLabAppImageConfig": ANY}
    )
    monkeypatch.setattr(studio, "_sagemaker", lambda boto_session: sm)
    with stub:
        studio.run(settings, "jupyterlab", "", remove=False, dry_run=False)
        stub.assert_no_pending_responses()
    assert f"image: {planned_uri} (pushed)" in capsys.readouterr().out
    # The version names exactly what the registry holds (content tag and kernel-name tag, one manifest).
    assert workspace_tags(registry) == sorted(["tabular_311-workspace", planned_uri.rsplit(":", 1)[1]])
    assert registry.digest(REPOSITORY, "tabular_311-workspace") == registry.digest(
        REPOSITORY, planned_uri.rsplit(":", 1)[1]
    )
    assert "ECR.GetAuthorizationToken" in operations(moto.calls())  # docker login through ECR, as for training


def workspace_tags(registry) -> list[str]:
    try:
        return sorted(tag for tag in registry.tags(REPOSITORY) if "workspace" in tag)
    except urllib.error.HTTPError:  # the repository does not exist yet
        return []
