# GPU image: our service on top of the official PaddleOCR-VL image, which brings Python 3.10,
# paddlepaddle-gpu, paddleocr[doc-parser] 3.3.x + paddlex serving and, in the -offline variants, the
# models (~/.paddlex/official_models: PP-DocLayoutV2, PaddleOCR-VL, UVDoc, PP-LCNet_x1_0_doc_ori) and
# the PingFang font. It runs as the user paddleocr (uid 1000, HOME=/home/paddleocr).
#
# Base images (registry ccr-2vdh3abv-pub.cnc.bj.baidubce.com/paddlepaddle/paddleocr-vl):
#   latest-gpu-sm120-offline           default: Blackwell (sm_120, RTX 50xx / RTX PRO 6000), CUDA 12.9,
#                                      PaddleOCR 3.3.x tag scheme
#   latest-offline                     A100 / H100 / other sm_80-sm_90 (PaddleOCR 3.3.x tag scheme)
#   latest-nvidia-gpu-sm120-offline    Blackwell, PaddleOCR >= 3.4 tag scheme (PaddleOCR-VL-1.5)
#   latest-nvidia-gpu-offline          A100 / H100 / sm_80-sm_90, PaddleOCR >= 3.4 tag scheme
#   paddleocr3.3-nvidia-gpu-sm120-offline, paddleocr3.4-nvidia-gpu-offline, ...
#                                      pinned to a PaddleOCR minor version: use these for reproducible builds
# Drop "-offline" for the images without models (they download them on first start).
# Build for an H100:
#   docker build --build-arg BASE_IMAGE=ccr-2vdh3abv-pub.cnc.bj.baidubce.com/paddlepaddle/paddleocr-vl:latest-offline .
ARG BASE_IMAGE=ccr-2vdh3abv-pub.cnc.bj.baidubce.com/paddlepaddle/paddleocr-vl:latest-gpu-sm120-offline
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8081 \
    OUTPUT_DIR=/app/output

# The base image's site-packages belong to root.
USER 0
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /app

# Tesseract's Russian and English models (the engine is libtesseract inside the tesserocr wheel): with a
# GPU the VLM reads every language and no CPU engine is loaded, but without one (or with OCR_CPU_ENGINES)
# the CPU fallback then reads Russian too, instead of returning empty pages; and its orientation model
# (osd), which turns sideways and upside-down pages upright for the CPU engines. ~13 MB.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr-eng tesseract-ocr-rus tesseract-ocr-osd \
    && rm -rf /var/lib/apt/lists/*

# Only our extra packages. Every package the base image already has is pinned to its installed
# version (constraints from pip freeze), so paddle, numpy, opencv & co. are never replaced.
# rapidocr (the CPU fallback engine) and onnxruntime go in without dependencies, which follow from
# their metadata minus opencv: rapidocr asks for opencv-python-headless, which would overwrite the base
# image's opencv-contrib-python (the same cv2 module).
COPY requirements.txt /tmp/requirements.txt
RUN python -m pip freeze --exclude-editable | grep -v ' @ ' > /tmp/base-constraints.txt \
    && grep -vE '^(rapidocr|onnxruntime)\b' /tmp/requirements.txt > /tmp/requirements-extra.txt \
    && python -m pip install --no-cache-dir -c /tmp/base-constraints.txt -r /tmp/requirements-extra.txt \
    && grep -E '^(rapidocr|onnxruntime)\b' /tmp/requirements.txt \
        | xargs python -m pip install --no-cache-dir --no-deps -c /tmp/base-constraints.txt \
    && python -c "from importlib.metadata import requires; \
print('\n'.join(r for p in ('rapidocr', 'onnxruntime') for r in requires(p) or [] \
                if 'opencv' not in r and 'extra ==' not in r))" > /tmp/fallback-deps.txt \
    && python -m pip install --no-cache-dir -c /tmp/base-constraints.txt -r /tmp/fallback-deps.txt \
    && python -c "import cv2, numpy, paddle, paddleocr, rapidocr, onnxruntime, fastapi, httpx" \
    && rm -f /tmp/requirements.txt /tmp/requirements-extra.txt /tmp/base-constraints.txt /tmp/fallback-deps.txt

COPY app/ /app/app/
COPY start.sh /app/start.sh
# Code stays root-owned (read-only for the service); only the output folder is writable by it, also
# for a platform that runs the container as another uid in group 0.
RUN chmod 0755 /app/start.sh \
    && mkdir -p /app/output \
    && chown paddleocr:root /app/output \
    && chmod 0775 /app/output

# paddleocr (the base image's user).
USER 1000:1000
EXPOSE 8081
# /health answers 200 as long as the process serves HTTP (also while the model loads).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8081'), timeout=4)"]
CMD ["/app/start.sh"]
