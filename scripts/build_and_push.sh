#!/usr/bin/env bash
# Build the service image for linux/amd64 and push it to Cloud.ru Artifact Registry.
#
#   scripts/build_and_push.sh --registry <registry_name> --gpu a100|h100|v100|blackwell [--tag TAG]
#
# --gpu picks the base image for the GPU of the Docker RUN (default: the Dockerfile's own, Blackwell sm_120).
# Log-in uses a personal access key of Artifact Registry: `docker login <registry_name>.cr.cloud.ru` with the
# key id as the user name and the key secret as the password (sent on standard input, never as an argument).
# The options that take a value have an environment variable (named in --help); options win over the
# environment. --build-arg, --no-push and --dry-run are options only.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/build_and_push.sh [options]

Options (environment variable in brackets; options without one are options only):
  -r, --registry NAME      registry name, as in NAME.cr.cloud.ru, or a full registry host [CLOUD_RU_REGISTRY]
  -g, --gpu GPU            the GPU of the Docker RUN, picks the base image [INFERENCE_GPU]:
                             blackwell  latest-gpu-sm120-offline (sm_120, CUDA 12.9): the Dockerfile's default
                             a100, h100 latest-offline (sm_80 / sm_90)
                             v100       latest-offline (sm_70: the in-process PaddlePaddle engine; see the guide)
                           default: none given, the Dockerfile's own base image (Blackwell)
  -b, --base-image IMAGE   any other base image, passed as --build-arg BASE_IMAGE=IMAGE [BASE_IMAGE]
                           (give --gpu or --base-image, not both)
  -i, --image NAME         image (repository) name, default paddleocr-vl-service [IMAGE_NAME]
  -t, --tag TAG            image tag, default the short git commit, else "latest" [IMAGE_TAG]
  -f, --file PATH          Dockerfile, relative to the context, default Dockerfile; the CPU image:
                           Dockerfile.cpu (takes no --gpu) [DOCKERFILE]
      --platform PLATFORM  default linux/amd64, what Docker RUN runs [PLATFORM]
      --context DIR        build context, default the repository root [BUILD_CONTEXT]
      --build-arg KEY=VAL  another build argument (repeatable)
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
# Base images of the official PaddleOCR-VL image (the models inside: "-offline"); see the Dockerfile.
base_repository="ccr-2vdh3abv-pub.cnc.bj.baidubce.com/paddlepaddle/paddleocr-vl"

registry="${CLOUD_RU_REGISTRY:-}"
image="${IMAGE_NAME:-paddleocr-vl-service}"
tag="${IMAGE_TAG:-}"
dockerfile="${DOCKERFILE:-Dockerfile}"
base_image="${BASE_IMAGE:-}"
gpu="${INFERENCE_GPU:-}"
platform="${PLATFORM:-linux/amd64}"
context="${BUILD_CONTEXT:-$repo_root}"
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
        -g | --gpu) need_value "$@"; gpu="$2"; shift 2 ;;
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
if [[ -n "$gpu" ]]; then
    [[ -z "$base_image" ]] || die "give --gpu (INFERENCE_GPU) or --base-image (BASE_IMAGE), not both"
    case "${gpu,,}" in
        blackwell) base_image="$base_repository:latest-gpu-sm120-offline" ;;
        a100 | h100 | v100) base_image="$base_repository:latest-offline" ;;
        *) die "unknown GPU: $gpu (one of blackwell, a100, h100, v100)" ;;
    esac
    if [[ -f "$dockerfile" ]] && ! grep -q '^ARG BASE_IMAGE' "$dockerfile"; then
        die "--gpu picks the base image of the GPU Dockerfile; $dockerfile has no BASE_IMAGE (the CPU image runs on any machine)"
    fi
    if [[ "${gpu,,}" == v100 ]]; then
        echo "note: V100 (sm_70): the in-process PaddlePaddle engine (VL_BACKEND=native) is supported; SGLang is not," \
            "vLLM is not recommended there; see CLOUDRU_DEPLOYMENT_GUIDE.md, section 2" >&2
    fi
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

if [[ -n "$base_image" ]]; then
    echo "base image: $base_image${gpu:+ (GPU: ${gpu,,})}"
else
    echo "base image: the Dockerfile's own"
fi
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
