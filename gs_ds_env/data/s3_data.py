"""The staged channels in S3: bucket created safely if missing, objects encrypted, unchanged content never re-sent."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gs_ds_env import aws
from gs_ds_env.data import CHANNELS, StagedData, sha256_of
from gs_ds_env.settings import Settings

MULTIPART_THRESHOLD, UPLOAD_THREADS = 64 * 1024 * 1024, 4
ENCRYPTION = "AES256"  # SSE-S3; also the bucket default we set on buckets we create


@dataclass
class Uploaded:
    channels: dict[str, str]  # channel -> channel_uri()
    objects: list[dict] = field(default_factory=list)  # uri, sha256, sent (False: already there)
    bucket_actions: list[str] = field(default_factory=list)


def key(settings: Settings, *parts: str) -> str:
    return "/".join(part.strip("/") for part in (settings.s3_prefix, *parts) if part.strip("/"))


def uri(settings: Settings, *parts: str) -> str:
    """s3://<bucket>/<prefix>/<parts...>"""
    return f"s3://{settings.s3_bucket}/{key(settings, *parts)}"


def object_key(settings: Settings, channel: str) -> str:
    return key(settings, "titanic", channel, f"{channel}.csv")


def channel_uri(settings: Settings, channel: str) -> str:
    """The exact object a channel reads (not its folder, so a stray file under the prefix is never trained on)."""
    return uri(settings, "titanic", channel, f"{channel}.csv")


def bucket_plan(settings: Settings) -> list[str]:
    location = {} if settings.aws_region == "us-east-1" else {"LocationConstraint": settings.aws_region}
    return [
        f"s3:HeadBucket Bucket={settings.s3_bucket}; if it does not exist:",
        f"  s3:CreateBucket Bucket={settings.s3_bucket} CreateBucketConfiguration={location}",
        f"  s3:PutPublicAccessBlock Bucket={settings.s3_bucket} (all four blocks true)",
        f"  s3:PutBucketEncryption Bucket={settings.s3_bucket} SSEAlgorithm={ENCRYPTION} BucketKeyEnabled=true",
    ]


def stage_plan(settings: Settings, source: str | None = None) -> list[str]:
    """What would be fetched and staged (`inv data --dry-run`; the target adds its upload_plan)."""
    return [
        f"fetch {source or settings.titanic_csv or settings.titanic_url}, verify sha256 "
        f"{settings.titanic_sha256[:12]}…, split {1 - settings.validation_fraction:g}/"
        f"{settings.validation_fraction:g} seed {settings.seed} into data/staged/"
    ]


def upload_plan(settings: Settings) -> list[str]:
    """What would be created and sent to S3 for the staged channels."""
    return bucket_plan(settings) + [
        f"s3:PutObject {channel_uri(settings, channel)} ServerSideEncryption={ENCRYPTION} "
        "Metadata={sha256: <of the staged file>} (skipped when the object already has that sha256)"
        for channel in CHANNELS
    ]


def ensure_bucket(settings: Settings, s3) -> list[str]:
    """Create the bucket in AWS_REGION if it is missing; refuse one in another region or not ours."""
    bucket = settings.s3_bucket
    try:
        head = s3.head_bucket(Bucket=bucket)
        region = head["ResponseMetadata"]["HTTPHeaders"].get("x-amz-bucket-region", settings.aws_region)
        if region != settings.aws_region:
            raise aws.AwsError(
                f"S3_BUCKET={bucket} is in {region} but AWS_REGION={settings.aws_region}: SageMaker "
                "reads channels from its own region; use a bucket there or change AWS_REGION"
            )
        return []
    except aws.ClientError as error:
        if aws.error_code(error) in {"403", "AccessDenied"}:
            raise aws.AwsError(
                f"S3_BUCKET={bucket} exists but this identity may not use it (403): choose another "
                "bucket name or grant access (see `inv iam-policy`)"
            ) from None
        if aws.error_code(error) not in {"404", "NoSuchBucket", "NotFound"}:
            raise aws.explain(error, f"checking bucket {bucket}") from None
    print(
        f"[s3] creating bucket {bucket} in {settings.aws_region} (public access blocked, {ENCRYPTION} by default)",
        flush=True,
    )
    try:
        options = (
            {}
            if settings.aws_region == "us-east-1"
            else {"CreateBucketConfiguration": {"LocationConstraint": settings.aws_region}}
        )
        s3.create_bucket(Bucket=bucket, **options)
        s3.put_public_access_block(
            Bucket=bucket,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )
        s3.put_bucket_encryption(
            Bucket=bucket,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": ENCRYPTION}, "BucketKeyEnabled": True}
                ]
            },
        )
    except (aws.ClientError, aws.BotoCoreError) as error:
        raise aws.explain(error, f"creating bucket {bucket}") from None
    return [f"created s3://{bucket} in {settings.aws_region}"]


class _Progress:
    """TransferConfig callback: percent done, printed at most every 25%."""

    def __init__(self, label: str, size: int) -> None:
        self.label, self.size, self.done, self.shown = label, max(size, 1), 0, -25
        self.lock = threading.Lock()

    def __call__(self, sent: int) -> None:
        with self.lock:
            self.done += sent
            percent = min(100, self.done * 100 // self.size)
            if percent >= self.shown + 25:
                self.shown = percent
                print(f"[s3] {self.label} {percent}% of {self.size / 1024:.0f} KiB", flush=True)


def _remote_sha256(s3, bucket: str, key: str) -> str | None:
    try:
        return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    except aws.ClientError as error:
        if aws.error_code(error) in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise aws.explain(error, f"checking s3://{bucket}/{key}") from None


def _send(settings: Settings, s3, path: Path, object_name: str, sha: str) -> bool:
    """Upload `path` unless the object already holds that sha256; True when it was sent."""
    target = f"s3://{settings.s3_bucket}/{object_name}"
    from boto3.exceptions import S3UploadFailedError
    from boto3.s3.transfer import TransferConfig

    if _remote_sha256(s3, settings.s3_bucket, object_name) == sha:
        print(f"[s3] {target} already holds this content (sha256 {sha[:12]}…); not uploading", flush=True)
        return False
    try:
        s3.upload_file(
            str(path),
            settings.s3_bucket,
            object_name,
            Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, max_concurrency=UPLOAD_THREADS),
            ExtraArgs={"ServerSideEncryption": ENCRYPTION, "Metadata": {"sha256": sha}},
            Callback=_Progress(object_name, path.stat().st_size),
        )
    except (aws.ClientError, aws.BotoCoreError, S3UploadFailedError) as error:
        raise aws.explain(error, f"uploading {path} to {target}") from None
    return True


def upload(settings: Settings, s3, staged: StagedData) -> Uploaded:
    result = Uploaded(channels={}, bucket_actions=ensure_bucket(settings, s3))
    for channel, folder in staged.channels.items():
        path: Path = folder / f"{channel}.csv"
        sha = sha256_of(path)
        sent = _send(settings, s3, path, object_key(settings, channel), sha)
        result.channels[channel] = channel_uri(settings, channel)
        result.objects.append({"uri": channel_uri(settings, channel), "sha256": sha, "sent": sent})
    return result


# ---- script-mode channels: content-addressed --------------------------------------------------------------
def channel_files(where: Path) -> list[tuple[str, Path]]:
    """(name inside the channel, file) for a folder's files, or a file alone."""
    if where.is_file():
        return [(where.name, where)]
    return sorted((str(path.relative_to(where)), path) for path in where.rglob("*") if path.is_file())


def content_prefix(settings: Settings, name: str, files: list[tuple[str, str]], area: str = "channels") -> str:
    """<prefix>/<area>/<name>/<digest>/ (area: channels for training, processing-input for processing), the digest
    over every (name, sha256): a prefix that holds exactly these files, so a file deleted locally or another run's
    files are never read."""
    listing = "".join(f"{relative}\0{sha}\n" for relative, sha in sorted(files))
    return key(settings, area, name, hashlib.sha256(listing.encode()).hexdigest()[:16]) + "/"


def planned_channel_uri(settings: Settings, name: str, where: str, area: str = "channels") -> str:
    if where.startswith("s3://"):
        return where
    files = [(relative, sha256_of(path)) for relative, path in channel_files(Path(where))]
    return f"s3://{settings.s3_bucket}/{content_prefix(settings, name, files, area)}"


def upload_channels(settings: Settings, s3, channels: dict[str, str], area: str = "channels") -> Uploaded:
    """Local channels (a folder, or one file) -> their content-addressed prefixes; s3:// URIs as they are. A file
    already in S3 with the same sha256 is not sent again."""
    result = Uploaded(channels={}, bucket_actions=ensure_bucket(settings, s3))
    for name, where in channels.items():
        if where.startswith("s3://"):
            result.channels[name] = where
            continue
        files = [(relative, path, sha256_of(path)) for relative, path in channel_files(Path(where))]
        prefix = content_prefix(settings, name, [(relative, sha) for relative, _, sha in files], area)
        sent = 0
        for relative, path, sha in files:
            sent += _send(settings, s3, path, prefix + relative, sha)
            result.objects.append({"uri": f"s3://{settings.s3_bucket}/{prefix}{relative}", "sha256": sha})
        result.channels[name] = f"s3://{settings.s3_bucket}/{prefix}"
        print(
            f"[s3] {'channel' if area == 'channels' else 'input'} {name}: {where} -> {result.channels[name]} ({sent} of "
            f"{len(files)} file(s) sent)",
            flush=True,
        )
    return result


def upload_model(settings: Settings, s3, archive: Path) -> str:
    """A local model.tar.gz under `<prefix>/models/<sha256, 16 hex>/model.tar.gz` (sent once per content), for an
    endpoint or a transform job to read; returns its s3:// URI."""
    ensure_bucket(settings, s3)
    sha = sha256_of(archive)
    object_name = key(settings, "models", sha[:16], "model.tar.gz")
    _send(settings, s3, archive, object_name, sha)
    return f"s3://{settings.s3_bucket}/{object_name}"
