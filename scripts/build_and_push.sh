#!/usr/bin/env bash
# Build the service image for linux/amd64 and push it to Cloud.ru Artifact Registry.
#
#   scripts/build_and_push.sh --registry <registry_name> [--tag TAG] [--file Dockerfile] [--base-image IMAGE]
#
# Log-in uses a personal access key of Artifact Registry: `docker login <registry_name>.cr.cloud.ru` with the
# key id as the user name and the key secret as the password (sent on standard input, never as an argument).
# Every option has an environment variable; options win over the environment.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/build_and_push.sh [options]

Options (environment variable in brackets):
  -r, --registry NAME      registry name, as in NAME.cr.cloud.ru, or a full registry host [CLOUD_RU_REGISTRY]
  -i, --image NAME         image (repository) name, default paddleocr-vl-service [IMAGE_NAME]
  -t, --tag TAG            image tag, default the short git commit, else "latest" [IMAGE_TAG]
  -f, --file PATH          Dockerfile relative to the context, default Dockerfile (or Dockerfile.cpu) [DOCKERFILE]
  -b, --base-image IMAGE   passed as --build-arg BASE_IMAGE=IMAGE; default: the Dockerfile's own [BASE_IMAGE]
      --build-arg KEY=VAL  another build argument (repeatable)
      --platform PLATFORM  default linux/amd64, what Model RUN runs [PLATFORM]
      --context DIR        build context, default the repository root
      --no-push            build only: no login, no push
      --dry-run            print the commands (secret masked) and run nothing
  -h, --help               this help

Credentials (personal access key of Artifact Registry, needed unless --no-push):
  CLOUD_RU_REGISTRY_KEY_ID   key id (the docker login user name)
  CLOUD_RU_REGISTRY_SECRET   key secret (the password, passed to docker login on standard input)
EOF
}

die() {
    echo "error: $*" >&2
    exit 2
}

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

registry="${CLOUD_RU_REGISTRY:-}"
image="${IMAGE_NAME:-paddleocr-vl-service}"
tag="${IMAGE_TAG:-}"
dockerfile="${DOCKERFILE:-Dockerfile}"
base_image="${BASE_IMAGE:-}"
platform="${PLATFORM:-linux/amd64}"
context="$repo_root"
push=1
dry_run=0
build_args=()

need_value() {
    # A missing value must not swallow the next option ("--registry --dry-run" would run for real).
    [[ $# -ge 2 && -n "$2" && "$2" != -* ]] || die "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        -r | --registry) need_value "$@"; registry="$2"; shift 2 ;;
        -i | --image) need_value "$@"; image="$2"; shift 2 ;;
        -t | --tag) need_value "$@"; tag="$2"; shift 2 ;;
        -f | --file) need_value "$@"; dockerfile="$2"; shift 2 ;;
        -b | --base-image) need_value "$@"; base_image="$2"; shift 2 ;;
        --build-arg) need_value "$@"; build_args+=(--build-arg "$2"); shift 2 ;;
        --platform) need_value "$@"; platform="$2"; shift 2 ;;
        --context) need_value "$@"; context="$2"; shift 2 ;;
        --no-push) push=0; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done

# --- check the inputs before running anything ------------------------------------------------------
missing=()
[[ -n "$registry" ]] || missing+=(CLOUD_RU_REGISTRY)
if [[ $push == 1 ]]; then
    [[ -n "${CLOUD_RU_REGISTRY_KEY_ID:-}" ]] || missing+=(CLOUD_RU_REGISTRY_KEY_ID)
    [[ -n "${CLOUD_RU_REGISTRY_SECRET:-}" ]] || missing+=(CLOUD_RU_REGISTRY_SECRET)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    die "missing: ${missing[*]} (registry name via --registry or CLOUD_RU_REGISTRY; the access key of" \
        "Artifact Registry via CLOUD_RU_REGISTRY_KEY_ID and CLOUD_RU_REGISTRY_SECRET; or --no-push to only build)"
fi
if [[ "$dockerfile" != /* ]]; then
    dockerfile="$context/$dockerfile"
fi
if [[ -z "$tag" ]]; then
    tag="$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo latest)"
fi
[[ "$tag" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "invalid tag: $tag"
if [[ ! -f "$dockerfile" ]]; then
    [[ $dry_run == 1 ]] || die "no Dockerfile at $dockerfile (choose one with --file; relative to the context)"
    echo "warning: no Dockerfile at $dockerfile" >&2
fi
if [[ "$registry" == *.* ]]; then
    host="$registry"
else
    host="$registry.cr.cloud.ru"
fi
reference="$host/$image:$tag"
if [[ $dry_run == 0 ]] && ! command -v docker >/dev/null 2>&1; then
    die "docker is not installed (or not on PATH)"
fi

# --- the commands ------------------------------------------------------------------------------------
# Print a command shell-quoted, then run it unless this is a dry run.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [[ $dry_run == 0 ]]; then
        "$@"
    fi
}

login() {
    printf "+ printf '%%s' '********' | docker login %q --username %q --password-stdin\n" \
        "$host" "$CLOUD_RU_REGISTRY_KEY_ID"
    if [[ $dry_run == 0 ]]; then
        printf '%s' "$CLOUD_RU_REGISTRY_SECRET" |
            docker login "$host" --username "$CLOUD_RU_REGISTRY_KEY_ID" --password-stdin
    fi
}

build_command=(docker build --platform "$platform" --file "$dockerfile" --tag "$reference")
if [[ -n "$base_image" ]]; then
    build_command+=(--build-arg "BASE_IMAGE=$base_image")
fi
if [[ ${#build_args[@]} -gt 0 ]]; then
    build_command+=("${build_args[@]}")
fi
build_command+=("$context")

if [[ $push == 1 ]]; then
    login # first, so that a base image in the same private registry can be pulled
fi
run "${build_command[@]}"
if [[ $push == 1 ]]; then
    run docker push "$reference"
fi
if [[ $dry_run == 1 ]]; then
    echo "dry run: nothing was run"
fi
echo "image: $reference"
