#!/usr/bin/env bash
# Installs the service's packages into a Python environment without changing the packages of the base image
# listed in docker/protected-packages.txt (paddle, paddleocr, paddlex, numpy, opencv, the CUDA wheels, ...).
# Both Dockerfiles run it; CI runs it on a copy of the GPU base image's Python (tests/integration/
# test_image_install.py), so what CI checks is what the image runs.
#
#   docker/install_extras.sh [--dry-run] REQUIREMENTS_FILE...
#
# Every installed package is handed to the resolver: the protected ones pinned to their installed version (with
# the extras they have installed, so what they depend on stays within their ranges), the others free to move
# up or down when one of our requirements needs it. The resolver is uv (installed from the package index with
# pip into a temporary folder and deleted afterwards): it answers in seconds, also when there is no answer,
# where pip backtracks for many minutes. A requirement that would change a protected package fails at once
# with that package's name. --dry-run shows what would change and installs nothing.
#
# Environment: PYTHON (the interpreter that receives the packages; default python3), PROTECTED_PACKAGES (the
# list; default docker/protected-packages.txt), UV (a uv binary to use instead of installing one),
# PIP_INDEX_URL / PIP_EXTRA_INDEX_URL (a mirror; passed on to uv), PIP_NO_CACHE_DIR / UV_NO_CACHE.
set -euo pipefail

UV_VERSION=0.13.9
here="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)"

dry_run=()
requirements=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=(--dry-run) ;;
        -*)
            echo "install_extras: unknown option $arg" >&2
            exit 2
            ;;
        *) requirements+=(-r "$arg") ;;
    esac
done
if [ "${#requirements[@]}" -eq 0 ]; then
    echo "usage: $0 [--dry-run] REQUIREMENTS_FILE..." >&2
    exit 2
fi

began=$SECONDS
python="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
protected_list="${PROTECTED_PACKAGES:-$here/protected-packages.txt}"
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT

if [ -z "${UV:-}" ]; then
    "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --target "$workdir/uv" "uv==$UV_VERSION"
    UV="$workdir/uv/bin/uv"
fi
# uv does not read pip's configuration: a mirror given to pip is given to uv too.
if [ -n "${PIP_INDEX_URL:-}" ] && [ -z "${UV_DEFAULT_INDEX:-}" ]; then
    export UV_DEFAULT_INDEX="$PIP_INDEX_URL"
fi
if [ -n "${PIP_EXTRA_INDEX_URL:-}" ] && [ -z "${UV_INDEX:-}" ]; then
    export UV_INDEX="$PIP_EXTRA_INDEX_URL"
fi
export UV_LINK_MODE="${UV_LINK_MODE:-copy}" UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1

"$python" "$here/install_plan.py" roots "$protected_list" "$workdir"

compile=()
if [ "${#dry_run[@]}" -eq 0 ]; then
    compile=(--compile-bytecode)  # as pip does; the images set PYTHONDONTWRITEBYTECODE
    "$python" "$here/install_plan.py" baseline "$workdir"
fi
# What the environment already has (files left out when empty: a bare python image has nothing to keep).
plan=()
for part in "-r roots.txt" "-c constraints.txt" "--excludes excludes.txt"; do
    if [ -s "$workdir/${part#* }" ]; then
        plan+=("${part% *}" "$workdir/${part#* }")
    fi
done
if ! "$UV" pip install --python "$python" "${dry_run[@]}" "${compile[@]}" "${requirements[@]}" "${plan[@]}" \
    >"$workdir/uv.log" 2>&1; then
    "$python" "$here/install_plan.py" explain "$workdir" "$workdir/uv.log" || true
    echo "install_extras: failed after $((SECONDS - began)) s" >&2
    exit 1
fi
sed 's/^/    /' "$workdir/uv.log"

if [ "${#dry_run[@]}" -eq 0 ]; then
    "$python" "$here/install_plan.py" verify "$workdir"
fi
echo "install_extras: done in $((SECONDS - began)) s"
