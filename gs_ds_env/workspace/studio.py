"""`inv studio-image`: the theme's workspace image as a SageMaker Studio image (TARGET=sagemaker).

The image is pushed to ECR (content tag, as for training), then SageMaker's own objects are made in order:
CreateImage -> CreateImageVersion (waited on until CREATED) -> CreateAppImageConfig (JupyterLab: its entry point;
classic Studio's KernelGateway: the theme's kernel name, uid/gid) -> UpdateDomain when a domain is given. Each
step first looks at what exists, so a re-run with nothing changed creates nothing. `--delete` removes what it
created (the image with its versions, the app image config, the domain's entry), only what carries its tag.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from gs_ds_env import aws
from gs_ds_env.settings import ConfigError, Settings
from gs_ds_env.workspace import GID, HOME, UID, WorkspaceError

MAX_NAME = 63  # SageMaker image and app image config names
APPS = {  # --app: its app image config key and the domain's user-settings key
    "jupyterlab": ("JupyterLabAppImageConfig", "JupyterLabAppSettings"),
    "kernel-gateway": ("KernelGatewayImageConfig", "KernelGatewayAppSettings"),
}
OWNER_TAG = "gs-ds-env:studio-image"  # on the image and the app image config; --delete refuses what lacks it
ENTRY_POINT = "/usr/local/bin/start-jupyterlab"  # docker/workspace/start-jupyterlab.sh: port 8888, base URL, no token
POLL_SECONDS = 10
WAIT_SECONDS = 30 * 60


@dataclass(frozen=True)
class StudioImage:
    """One theme + Python as Studio knows it: the SageMaker image and its app image config share one name."""

    name: str
    kernel: str
    display_name: str
    app: str

    @classmethod
    def of(cls, settings: Settings, app: str = "jupyterlab") -> StudioImage:
        if app not in APPS:
            raise ConfigError(f"--app {app!r}: use jupyterlab (Studio) or kernel-gateway (Studio Classic)")
        base, suffix = settings.base_job_name.lower(), f"py{settings.py.replace('.', '')}"
        room = MAX_NAME - len(base) - len(suffix) - 2
        theme = settings.theme
        if len(theme) > room:  # a long base and theme: cut, with a hash so two cut themes never share a name
            theme = f"{theme[: room - 7].rstrip('-')}-{hashlib.sha256(theme.encode()).hexdigest()[:6]}"
        return cls(f"{base}-{theme}-{suffix}", settings.kernel_name, f"Python {settings.py} ({settings.theme})", app)

    def app_image_config(self) -> dict:
        if self.app == "jupyterlab":
            return {"JupyterLabAppImageConfig": {"ContainerConfig": {"ContainerEntrypoint": [ENTRY_POINT]}}}
        return {
            "KernelGatewayImageConfig": {
                "KernelSpecs": [{"Name": self.kernel, "DisplayName": self.display_name}],
                "FileSystemConfig": {"MountPath": HOME, "DefaultUid": UID, "DefaultGid": GID},
            }
        }

    def custom_image(self) -> dict:
        """The domain's entry (no version number: Studio offers the newest)."""
        return {"ImageName": self.name, "AppImageConfigName": self.name}

    def tags(self, settings: Settings) -> list[dict[str, str]]:
        return [{"Key": k, "Value": v} for k, v in {**settings.tags, OWNER_TAG: self.kernel}.items()]


def plan(settings: Settings, studio: StudioImage, domain_id: str) -> list[str]:
    settings_key = APPS[studio.app][1]
    return [
        f"studio image {studio.name} ({settings.theme}, Python {settings.py}, {studio.app}):",
        f"  push the workspace image to ECR repository {settings.ecr_repository} (skipped when the content tag is there)",
        f"  sagemaker:CreateImage {studio.name} (role {settings.sagemaker_role_arn}; skipped if it exists)",
        "  sagemaker:CreateImageVersion from the pushed image, wait until CREATED (skipped if the newest holds it)",
        f"  sagemaker:CreateAppImageConfig {studio.name} ({APPS[studio.app][0]}; updated if it differs)",
        f"  sagemaker:UpdateDomain {domain_id}: add it to DefaultUserSettings.{settings_key}.CustomImages"
        if domain_id
        else "  no --domain-id: the domain is left alone (the command that attaches it is printed)",
        f"  tags {OWNER_TAG} and TAGS; remove with: inv studio-image --theme {settings.theme} --py {settings.py} "
        "--delete" + (f" --domain-id {domain_id}" if domain_id else ""),
    ]


def _missing(error: ClientError) -> bool:
    return aws.error_code(error) in ("ResourceNotFound", "ResourceNotFoundException")


def _describe(call, **kwargs) -> dict | None:
    """A Describe* answer, or None when the resource does not exist."""
    try:
        return call(**kwargs)
    except ClientError as error:
        if _missing(error):
            return None
        raise


def _wait(describe, status_key: str, what: str, sleep, poll: float, **kwargs) -> dict:
    """Poll until CREATED; CREATE_FAILED ends it with SageMaker's reason."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        answer = describe(**kwargs)
        status = answer[status_key]
        if status == "CREATED":
            return answer
        if status.endswith("FAILED") or status == "DELETING":
            raise WorkspaceError(f"{what} is {status}: {answer.get('FailureReason', 'no reason given')}")
        if time.monotonic() > deadline:
            raise WorkspaceError(f"{what} still {status} after {WAIT_SECONDS // 60} min: see the SageMaker console")
        sleep(poll)


def publish(
    settings: Settings,
    sm,
    studio: StudioImage,
    image_uri: str,
    domain_id: str = "",
    sleep=time.sleep,
    poll=POLL_SECONDS,
) -> list[str]:
    """Make (or find) the image, a version holding `image_uri`, the app image config, and the domain's entry;
    returns what it did, a line per step."""
    done = []
    try:
        if _describe(sm.describe_image, ImageName=studio.name) is None:
            sm.create_image(
                ImageName=studio.name,
                RoleArn=settings.sagemaker_role_arn,
                DisplayName=studio.display_name,
                Description=f"gs-ds-env workspace: theme {settings.theme}, Python {settings.py}",
                Tags=studio.tags(settings),
            )
            done.append(f"image {studio.name}: created")
        else:
            done.append(f"image {studio.name}: exists")
        _wait(sm.describe_image, "ImageStatus", f"image {studio.name}", sleep, poll, ImageName=studio.name)

        version, line = _version_holding(sm, studio, image_uri)
        done.append(line)
        _wait(
            sm.describe_image_version, "ImageVersionStatus", f"version {version} of image {studio.name}",
            sleep, poll, ImageName=studio.name, Version=version,
        )  # fmt: skip
        done.append(_app_image_config(settings, sm, studio))
        if domain_id:
            done.append(_attach(sm, studio, domain_id))
        else:
            done.append(f"attach it to a Studio domain: inv studio-image --theme {settings.theme} --domain-id <d-...>")
    except ClientError as error:
        raise aws.explain(error, f"making the Studio image {studio.name}") from None
    return done


def _version_holding(sm, studio: StudioImage, image_uri: str) -> tuple[int, str]:
    """The image's newest version when it holds `image_uri` (and did not fail), else a new one."""
    newest = _describe(sm.describe_image_version, ImageName=studio.name)
    if newest and newest["BaseImage"] == image_uri and not newest["ImageVersionStatus"].endswith("FAILED"):
        return newest["Version"], f"version {newest['Version']}: already holds {image_uri}"
    created = sm.create_image_version(
        ImageName=studio.name,
        BaseImage=image_uri,
        # The same image asked twice (a retry) is one version.
        ClientToken=hashlib.sha256(f"{studio.name} {image_uri}".encode()).hexdigest()[:36],
    )
    version = int(created["ImageVersionArn"].rsplit("/", 1)[1])
    return version, f"version {version}: created from {image_uri}"


def _app_image_config(settings: Settings, sm, studio: StudioImage) -> str:
    """The app image config (JupyterLab's entry point, or the kernel gateway's kernel and home), made or brought up
    to date."""
    wanted = studio.app_image_config()
    existing = _describe(sm.describe_app_image_config, AppImageConfigName=studio.name)
    if existing is None:
        sm.create_app_image_config(AppImageConfigName=studio.name, Tags=studio.tags(settings), **wanted)
        return f"app image config {studio.name}: created"
    if any(existing.get(key) != value for key, value in wanted.items()):
        sm.update_app_image_config(AppImageConfigName=studio.name, **wanted)
        return f"app image config {studio.name}: updated"
    return f"app image config {studio.name}: unchanged"


def _domain_settings(sm, studio: StudioImage, domain_id: str) -> tuple[str, dict]:
    key = APPS[studio.app][1]
    domain = sm.describe_domain(DomainId=domain_id)
    return key, dict(domain.get("DefaultUserSettings", {}).get(key, {}))


def _attach(sm, studio: StudioImage, domain_id: str) -> str:
    """UpdateDomain replaces the whole app settings object: the domain's own settings are read and sent back."""
    key, app_settings = _domain_settings(sm, studio, domain_id)
    images = app_settings.get("CustomImages", [])
    if any(entry.get("ImageName") == studio.name for entry in images):
        return f"domain {domain_id}: already offers {studio.name}"
    sm.update_domain(
        DomainId=domain_id,
        DefaultUserSettings={key: {**app_settings, "CustomImages": [*images, studio.custom_image()]}},
    )
    return f"domain {domain_id}: offers {studio.name} (pick it for a {studio.app} space)"


def attach_command(studio: StudioImage, domain_id: str = "<d-...>") -> str:
    """By hand (it replaces the domain's list: keep the images already in it)."""
    key = APPS[studio.app][1]
    body = json.dumps({key: {"CustomImages": [studio.custom_image()]}})
    return f"aws sagemaker update-domain --domain-id {domain_id} --default-user-settings '{body}'"


def delete_plan(studio: StudioImage, domain_id: str) -> list[str]:
    return [
        *([f"remove {studio.name} from domain {domain_id} (sagemaker:UpdateDomain)"] if domain_id else []),
        f"delete app image config {studio.name} (sagemaker:DeleteAppImageConfig)",
        f"delete image {studio.name} and its versions (sagemaker:DeleteImage; the pushed image stays in ECR)",
    ]


def _owned(sm, arn: str, what: str) -> None:
    tags = {tag["Key"] for tag in sm.list_tags(ResourceArn=arn).get("Tags", [])}
    if OWNER_TAG not in tags:
        raise WorkspaceError(f"{what} has no {OWNER_TAG} tag: not made by inv studio-image, so it is left alone")


def delete(sm, studio: StudioImage, domain_id: str = "") -> list[str]:
    """Undo publish: the domain's entry, the app image config, the image (with its versions). What is already gone
    is said so; what this project did not tag is refused before anything is deleted."""
    done = []
    try:
        image = _describe(sm.describe_image, ImageName=studio.name)
        config = _describe(sm.describe_app_image_config, AppImageConfigName=studio.name)
        for found, arn_key, what in ((image, "ImageArn", "image"), (config, "AppImageConfigArn", "app image config")):
            if found:
                _owned(sm, found[arn_key], f"{what} {studio.name}")
        if domain_id:
            key, app_settings = _domain_settings(sm, studio, domain_id)
            images = app_settings.get("CustomImages", [])
            kept = [entry for entry in images if entry.get("ImageName") != studio.name]
            if kept != images:
                sm.update_domain(DomainId=domain_id, DefaultUserSettings={key: {**app_settings, "CustomImages": kept}})
                done.append(f"domain {domain_id}: no longer offers {studio.name}")
            else:
                done.append(f"domain {domain_id}: did not offer {studio.name}")
        if config:
            sm.delete_app_image_config(AppImageConfigName=studio.name)
        done.append(f"app image config {studio.name}: {'deleted' if config else 'not there'}")
        if image:
            sm.delete_image(ImageName=studio.name)
        done.append(f"image {studio.name}: {'deleted with its versions' if image else 'not there'}")
    except ClientError as error:
        raise aws.explain(error, f"deleting the Studio image {studio.name}") from None
    return done


def run(settings: Settings, app: str, domain_id: str, remove: bool, dry_run: bool) -> None:
    """The task: print the plan, then (unless `dry_run`) push and publish, or delete; a line per step."""
    from gs_ds_env import image
    from gs_ds_env.aws import iam

    studio = StudioImage.of(settings, app)
    if domain_id and not re.fullmatch(r"d-[a-z0-9]{12}", domain_id):
        raise ConfigError(
            f"--domain-id {domain_id!r} is not a Studio domain id (d- and 12 letters/digits): see "
            "`aws sagemaker list-domains`"
        )
    if remove:
        print("\n".join(("would " if dry_run else "") + step for step in delete_plan(studio, domain_id)), flush=True)
        if not dry_run:
            print("\n".join(delete(_sagemaker(aws.session(settings)), studio, domain_id)), flush=True)
        return
    print("\n".join(plan(settings, studio, domain_id)), flush=True)
    if dry_run:
        pushed = image.push_plan(settings, iam.account_of(settings.sagemaker_role_arn), workspace=True)
        print(f"  image: {pushed.image_uri}\n  by hand, to attach it: {attach_command(studio, domain_id or '<d-...>')}")
        return
    boto_session = aws.session(settings)
    pushed = image.push(settings, aws.account_id(boto_session), workspace=True)
    print(f"image: {pushed.uri} ({'pushed' if pushed.pushed else 'already in ECR'})", flush=True)
    for line in publish(settings, _sagemaker(boto_session), studio, pushed.uri, domain_id):
        print(line, flush=True)


def _sagemaker(boto_session):
    return aws.client(boto_session, "sagemaker")
