#!/usr/bin/env bash
# Build a theme's training image and push it to ECR. Linear on purpose, like AWS's build_and_push.sh.
set -Eeuo pipefail

usage() {
  cat <<'EOF'
Usage: gs-env-docker-build-push.sh [options] <theme> <aws_account_id> <region> <ecr_repo_name> <tag>

Build docker/Dockerfile for themes/<theme>/docker/requirements.txt (installed with uv under the theme's
lock, themes/<theme>/requirements.lock) and push it to <account>.dkr.ecr.<region>.amazonaws.com/<ecr_repo_name>
(amazonaws.com.cn in the China regions)
as <tag> (e.g. tabular_312) and as <tag>-<content digest>: the digest of every build input (lock, pinned base
image, Dockerfile, training/, smoke test, uv version, torch backend), so a rebuild with nothing changed builds
and pushes nothing, on the first run and the second alike.

Options:
  --py X.Y            Python of the image (default: $PY, else the theme's DEFAULT_PYTHON)
  --kind KIND         training (the image gets the SageMaker toolkit and serving stack) or app (default: the
                      theme's theme.env KIND, else training); inv passes it
  --base-image IMAGE  base image (default: the digest-pinned BASE_IMAGE_<py> of docker/pins.env); also $BASE_IMAGE
  --uv-version X.Y.Z  the uv the image installs with (default: UV_VERSION of docker/pins.env); also $UV_VERSION
  --torch-backend B   none (default: torch from PyPI, as locked), cpu, cu126, ...; also $TORCH_BACKEND
  --no-push           build and tag locally only; account and region may then be '-'
  --registry HOST     registry host override (private endpoints, tests); also $ECR_REGISTRY
  --no-cache          build without Docker's layer cache (a cold build)
  --ca-bundle FILE    PEM certificates the build stages trust in addition (a TLS-inspecting corporate proxy's CA);
                      also $BUILD_CA_BUNDLE. Only the build stages install from the network; the image is unchanged
  --immutable         create the repository with tag immutability (then only the content tag is pushed)
  --workspace         the workspace variant (Dockerfile target workspace: the image plus JupyterLab, the theme's
                      kernel registered, user sagemaker-user 1000:100), tagged <tag>-workspace[-<digest>]
  --dry-run           print every command it would run, in order (the by-hand recipe), do nothing
  --result-file FILE  also write the KEY=value results to FILE (as docker build --iidfile does): what inv reads
  -h, --help          this help

Results: CONTENT_TAG=, BASE_IMAGE=, IMAGE_URI= and, when pushing, IMAGE_DIGEST= and PUSHED= (tags sent; empty
when the registry already had the content tag), on stdout and in --result-file; progress on stderr.
Needs docker; pushing also needs the AWS CLI (AWS_PROFILE / AWS_ENDPOINT_URL are honoured).
EOF
}

GS_SCRIPT=gs-env-docker-build-push GS_LOG_TAG=image
# shellcheck source=bin/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # die, log, env_get, check
REPO_ROOT="$GS_REPO_ROOT"

push=1
dry_run=0
cache_args=()
immutable=0
workspace=0
py="${PY:-}"
kind=""
base_image="${BASE_IMAGE:-}"
uv_version="${UV_VERSION:-}"
torch_backend="${TORCH_BACKEND:-none}"
registry="${ECR_REGISTRY:-}"
ca_bundle="${BUILD_CA_BUNDLE:-}"
result_file=""
positional=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --no-push) push=0 ;;
    --dry-run) dry_run=1 ;;
    --immutable) immutable=1 ;;
    --workspace) workspace=1 ;;
    --no-cache) cache_args=(--no-cache) ;;
    --py) [[ $# -ge 2 ]] || die "--py needs a value"; py="$2"; shift ;;
    --kind) [[ $# -ge 2 ]] || die "--kind needs a value"; kind="$2"; shift ;;
    --base-image) [[ $# -ge 2 ]] || die "--base-image needs a value"; base_image="$2"; shift ;;
    --uv-version) [[ $# -ge 2 ]] || die "--uv-version needs a value"; uv_version="$2"; shift ;;
    --torch-backend) [[ $# -ge 2 ]] || die "--torch-backend needs a value"; torch_backend="$2"; shift ;;
    --registry) [[ $# -ge 2 ]] || die "--registry needs a value"; registry="$2"; shift ;;
    --ca-bundle) [[ $# -ge 2 ]] || die "--ca-bundle needs a value"; ca_bundle="$2"; shift ;;
    --result-file) [[ $# -ge 2 ]] || die "--result-file needs a value"; result_file="$2"; shift ;;
    -?*) die "unknown option '$1' (see --help)" ;;
    *) positional+=("$1") ;;
  esac
  shift
done
((${#positional[@]} == 5)) || { usage >&2; exit 2; }
theme="${positional[0]}" account="${positional[1]}" region="${positional[2]}" repo="${positional[3]}" tag="${positional[4]}"
target=training
if ((workspace)); then
  target=workspace
  tag="$tag-workspace"
fi

# ---- validate everything before touching docker or AWS ----------------------------------------------
# The rules the settings apply too (gs_ds_env/rules.env; a test feeds the same values to both).
check THEME_NAME "$theme" "theme '$theme' is not a valid name: lowercase letters, digits and single '-', starting with a letter, at most 32 characters"
[[ -f "$REPO_ROOT/themes/$theme/docker/requirements.txt" ]] ||
  die "theme '$theme' has no themes/$theme/docker/requirements.txt; available: $(cd "$REPO_ROOT/themes" && find . -path '*/docker/requirements.txt' | cut -d/ -f2 | sort | xargs)"
if ((push)) || [[ "$account" != - ]]; then
  [[ "$account" =~ ^[0-9]{12}$ ]] || die "aws_account_id '$account' must be 12 digits (aws sts get-caller-identity --query Account)"
fi
if ((push)) || [[ "$region" != - ]]; then
  check AWS_REGION "$region" "region '$region' is not an AWS region such as eu-west-1"
fi
[[ ${#repo} -ge 2 && ${#repo} -le 256 && "$repo" =~ ^([a-z0-9]+([._-][a-z0-9]+)*/)*[a-z0-9]+([._-][a-z0-9]+)*$ ]] ||
  die "ecr_repo_name '$repo' is invalid: lowercase letters, digits, '.', '_', '-' and '/' separators, 2-256 characters"
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}$ ]] ||
  die "tag '$tag' is invalid: letters, digits, '_', '.', '-', not starting with '.' or '-', at most 101 characters"
# theme.env is read here only standalone (inv passes --py and --kind as the project's Theme reads them).
theme_env="$REPO_ROOT/themes/$theme/theme.env"
if [[ -z "$py" || -z "$kind" ]]; then
  read -r theme_kind _ <<<"$(env_get "$theme_env" KIND)" || true # its first word, as Theme.kind
  [[ "$theme_kind" == app ]] || theme_kind=training                # as Theme.kind: app, or else training
  py="${py:-$(env_get "$theme_env" DEFAULT_PYTHON)}" kind="${kind:-$theme_kind}"
fi
kind="${kind:-training}"
[[ "$kind" == training || "$kind" == app ]] || die "kind '$kind' is not training or app (--kind, or KIND in themes/$theme/theme.env)"
check PYTHON_VERSION "$py" "python version '$py' is not of the form 3.N (use --py 3.12)"
[[ -f "$REPO_ROOT/themes/$theme/requirements.lock" ]] ||
  die "theme '$theme' has no lock themes/$theme/requirements.lock: create it with 'inv lock --theme $theme'"
# A training theme's image gets the SageMaker training toolkit; an app theme does not.
toolkit=1
if [[ "$kind" == app ]]; then toolkit=0; fi
check TORCH_BACKEND "$torch_backend" "torch backend '$torch_backend' is not one of auto, none, cpu, cuNNN (e.g. cu126), rocmX.Y, xpu"
if [[ -z "$uv_version" || -z "$base_image" ]]; then # standalone: docker/pins.env (inv passes both)
  uv_version="${uv_version:-$(env_get "$REPO_ROOT/docker/pins.env" UV_VERSION)}"
  base_image="${base_image:-$(env_get "$REPO_ROOT/docker/pins.env" "BASE_IMAGE_${py//./_}")}"
fi
[[ "$uv_version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "uv version '$uv_version' (--uv-version, or UV_VERSION in docker/pins.env) is not a version such as 0.13.9"
[[ -n "$base_image" ]] ||
  die "no pinned base image for Python $py in docker/pins.env: add BASE_IMAGE_${py//./_} (inv lock --base) or pass --base-image"
ca_args=()
if [[ -n "$ca_bundle" ]]; then
  [[ -f "$ca_bundle" && -r "$ca_bundle" ]] || die "CA bundle '$ca_bundle' is not a readable file (BUILD_CA_BUNDLE / --ca-bundle)"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$ca_bundle" ||
    die "CA bundle '$ca_bundle' holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
  (($(wc -c <"$ca_bundle") <= 100000)) ||
    die "CA bundle '$ca_bundle' is over 100 kB: give only your proxy's CA certificate(s), not a whole system bundle"
  # A CA certificate is public: as a build argument it reaches only the build stages (see docker/Dockerfile).
  ca_args=(--build-arg "EXTRA_CA_CERTS=$(cat "$ca_bundle")")
fi
command -v docker >/dev/null 2>&1 || die "docker is not installed (or not on PATH)"
if ((push)); then
  command -v aws >/dev/null 2>&1 || die "the AWS CLI is needed to push (pip install awscli, or use --no-push)"
fi

# ---- content tag: a digest of every build input ------------------------------------------------------
# The base counts by what it is: a digest-pinned reference names its content; an unpinned one counts by its local
# image Id, pulled first when it is not here yet, so the first build and the next give the same tag.
base_identity() {
  if [[ "$base_image" == *@sha256:* ]]; then
    echo "$base_image"
    return
  fi
  if ! docker image inspect "$base_image" >/dev/null 2>&1; then
    if ((dry_run)); then
      log "warning: base image $base_image is neither pinned by digest nor present locally: a real run pulls it first"
      echo "$base_image"
      return
    fi
    log "base image $base_image is not pinned by digest and not here: pulling it to pin what the tag names today"
    docker pull --quiet "$base_image" >&2 || die "cannot pull base image $base_image: pin BASE_IMAGE by digest or load it (docker load)"
  fi
  log "note: base image $base_image is not pinned by digest; its local Id stands for it in the content tag"
  docker image inspect --format '{{.Id}}' "$base_image"
}
content_digest() {
  {
    printf 'py=%s\nbase=%s\ntheme=%s\ntorch=%s\nuv=%s\ntoolkit=%s\ntarget=%s\n' "$py" "$(base_identity)" "$theme" \
      "$torch_backend" "$uv_version" "$toolkit" "$target"
    cd "$REPO_ROOT"
    local inputs=(docker training "themes/$theme/docker" "themes/$theme/requirements.lock" "themes/$theme/smoke.py"
      .dockerignore)
    [[ -f "themes/$theme/app.py" ]] && inputs+=("themes/$theme/app.py")
    # What only the workspace variant is built from (docker/workspace/) does not change the training image's tag.
    local workspace_only=()
    [[ "$target" == workspace ]] || workspace_only=(! -path 'docker/workspace/*')
    find "${inputs[@]}" \
      -type f ! -path '*/__pycache__/*' ! -name '*.pyc' "${workspace_only[@]}" -print0 2>/dev/null |
      LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-12
}
content_tag="${tag}-$(content_digest)"
local_image="$repo:$tag"
if ((push)); then
  ecr_domain=amazonaws.com
  [[ "$region" == cn-* ]] && ecr_domain=amazonaws.com.cn # the China regions' endpoints
  registry="${registry:-$account.dkr.ecr.$region.$ecr_domain}"
  remote="$registry/$repo"
fi

result() { # KEY VALUE -> stdout, and the --result-file
  printf '%s=%s\n' "$1" "$2"
  if [[ -n "$result_file" ]]; then printf '%s=%s\n' "$1" "$2" >>"$result_file"; fi
}
if [[ -n "$result_file" ]]; then : >"$result_file"; fi

# The commands, built once: run below, or printed by --dry-run as the by-hand recipe.
build_cmd=(docker build --force-rm "${cache_args[@]}"
  --file "$REPO_ROOT/docker/Dockerfile" --target "$target"
  --build-arg "PY=$py" --build-arg "THEME=$theme" --build-arg "BASE_IMAGE=$base_image"
  --build-arg "UV_VERSION=$uv_version" --build-arg "TORCH_BACKEND=$torch_backend" --build-arg "TOOLKIT=$toolkit"
  "${ca_args[@]}"
  --label "gs-ds-env.theme=$theme" --label "gs-ds-env.python=$py" --label "gs-ds-env.content-tag=$content_tag"
  --label "gs-ds-env.variant=$target"
  --label "gs-ds-env.base-image=$base_image" --label "gs-ds-env.torch-backend=$torch_backend"
  --label "gs-ds-env.lock-sha256=$(sha256sum "$REPO_ROOT/themes/$theme/requirements.lock" | cut -d' ' -f1)"
  --label "gs-ds-env.checkout=$REPO_ROOT"
  --tag "$repo:$content_tag" --tag "$local_image"
  "$REPO_ROOT")
if ((push)); then
  describe_repo_cmd=(aws ecr describe-repositories --region "$region" --repository-names "$repo")
  create_repo_cmd=(aws ecr create-repository --region "$region" --repository-name "$repo"
    --image-scanning-configuration scanOnPush=true
    --image-tag-mutability "$( ((immutable)) && echo IMMUTABLE || echo MUTABLE)")
  tags_to_push=("$content_tag")
  ((immutable)) || tags_to_push+=("$tag")
fi

if ((dry_run)); then
  # Each line: what it would do, then the command that does it (not run when the result already exists).
  log "[dry-run] would build $repo:$content_tag (unless it exists): ${build_cmd[*]}"
  if ((push)); then
    log "[dry-run] would ensure ECR repository $repo in $region: ${describe_repo_cmd[*]} || ${create_repo_cmd[*]}"
    log "[dry-run] would log in: aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
    for push_tag in "${tags_to_push[@]}"; do
      log "[dry-run] would push $remote:$push_tag (unless the registry has $remote:$content_tag): docker tag $repo:$content_tag $remote:$push_tag && docker push $remote:$push_tag"
    done
  fi
  result CONTENT_TAG "$content_tag"
  result BASE_IMAGE "$base_image"
  result IMAGE_URI "${remote:-$repo}:$content_tag"
  exit 0
fi

# ---- build (tags move only when the build succeeds, so a failed build keeps the last good image) -----
if ((${#cache_args[@]} == 0)) && docker image inspect "$repo:$content_tag" >/dev/null 2>&1; then
  log "image $repo:$content_tag is up to date (same build inputs); not rebuilding"
  docker tag "$repo:$content_tag" "$local_image"
else
  log "building $repo:$content_tag (theme $theme, Python $py, base $base_image)"
  "${build_cmd[@]}" >&2
fi
result CONTENT_TAG "$content_tag"
result BASE_IMAGE "$base_image"

if ((!push)); then
  result IMAGE_URI "$repo:$content_tag"
  exit 0
fi

# ---- push to ECR --------------------------------------------------------------------------------------
if ! "${describe_repo_cmd[@]}" >/dev/null 2>&1; then
  log "creating ECR repository $repo in $region (scan on push$( ((immutable)) && echo ', immutable tags'))"
  "${create_repo_cmd[@]}" >/dev/null
fi

log "logging in to $registry"
# The password goes through a pipe only: never on a command line, never in a log.
aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" >/dev/null ||
  die "docker login to $registry failed: check the AWS credentials (aws sts get-caller-identity) and ecr:GetAuthorizationToken"

manifest_args=()
[[ "$registry" =~ ^(localhost|127\.[0-9.]+)(:[0-9]+)?$ ]] && manifest_args+=(--insecure) # plain-HTTP local registry
pushed=()
if docker manifest inspect "${manifest_args[@]}" "$remote:$content_tag" >/dev/null 2>&1; then
  log "$remote:$content_tag is already in the registry; nothing to push"
else
  for push_tag in "${tags_to_push[@]}"; do
    docker tag "$repo:$content_tag" "$remote:$push_tag"
    log "pushing $remote:$push_tag"
    docker push "$remote:$push_tag" >&2
    pushed+=("$push_tag")
  done
fi

docker pull --quiet "$remote:$content_tag" >/dev/null 2>&1 || true # records the registry digest locally
digest="$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$repo:$content_tag" | grep -F "$remote@" | head -n 1 | cut -d@ -f2)"
result IMAGE_URI "$remote:$content_tag"
result IMAGE_DIGEST "${digest:-unknown}"
result PUSHED "${pushed[*]}"
