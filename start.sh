#!/usr/bin/env bash
# Container entry point (also runs from a checkout): set the internal environment of PaddlePaddle /
# PaddleX, create the output folder, then replace this shell with the server (exec), so that SIGTERM
# from the platform reaches uvicorn, which finishes the requests in flight and exits 0.
#
# Every variable below is set only when the caller has not set it. They are documented in
# ML_INFERENCE_ENV_VARS.md under "Внутренние переменные"; the service's own settings are read by
# app/settings.py, not here. The engine loads in the background: /health answers at once.
set -euo pipefail

cd "$(dirname "$(readlink -f "$0")")"

# The base image keeps its models (official_models/) and fonts under the paddleocr user's home;
# elsewhere (a checkout, a container run as another user) the current HOME is used.
if [ -d /home/paddleocr/.paddlex ]; then
    home_base=/home/paddleocr
else
    home_base="${HOME:-/tmp}"
fi

export PADDLE_PDX_CACHE_HOME="${PADDLE_PDX_CACHE_HOME:-${home_base}/.paddlex}"
export PADDLEX_HOME="${PADDLEX_HOME:-${PADDLE_PDX_CACHE_HOME}}"
export HF_HOME="${HF_HOME:-${home_base}/.cache/huggingface}"
# Offline: do not probe the model hosters at import time (slow or hanging without internet).
export PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK="${PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK:-True}"
# PaddlePaddle: dynamic graph, free tensors at once, no oneDNN on CPU (PaddlePaddle 3.x fails on some models with it).
export FLAGS_enable_eager_mode="${FLAGS_enable_eager_mode:-1}"
export FLAGS_eager_delete_tensor_gb="${FLAGS_eager_delete_tensor_gb:-0}"
export FLAGS_use_mkldnn="${FLAGS_use_mkldnn:-0}"
# Pages run in parallel on OCR_CONCURRENCY worker threads; an OpenMP team per page on top of them (Debian's
# libtesseract spins its threads: 7-9x slower on 2 cores) would oversubscribe the cores.
export OMP_THREAD_LIMIT="${OMP_THREAD_LIMIT:-1}"

# PaddleX downloads a font for its visualisations unless one is given; offline that download fails.
if [ -z "${PADDLE_PDX_LOCAL_FONT_FILE_PATH:-}" ]; then
    for font in "${PADDLE_PDX_CACHE_HOME}/fonts/PingFang-SC-Regular.ttf" \
        /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf; do
        if [ -f "$font" ]; then
            export PADDLE_PDX_LOCAL_FONT_FILE_PATH="$font"
            break
        fi
    done
fi

output_dir="${OUTPUT_DIR:-/app/output}"
if ! mkdir -p "$output_dir" 2>/dev/null; then
    if [ -n "${OUTPUT_DIR:-}" ]; then
        echo "start.sh: cannot create OUTPUT_DIR=$output_dir; the service will not start" >&2
    else
        echo "start.sh: cannot create the default $output_dir; the service will use ./output" >&2
    fi
fi

# The interpreter: PYTHON when set, else the checkout's .venv, else python3 on PATH (the images).
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then
        PYTHON=.venv/bin/python
    else
        PYTHON=python3
    fi
fi

# uvicorn on HOST:PORT (default 0.0.0.0:8081), one worker; see app/__main__.py.
exec "$PYTHON" -m app
