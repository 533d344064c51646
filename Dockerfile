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
# V100 (sm_70) runs latest-offline too, with the in-process PaddlePaddle engine (CLOUDRU_DEPLOYMENT_GUIDE.md, 2).
# scripts/build_and_push.sh --gpu a100|h100|v100|blackwell picks the tag; by hand, for an H100:
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
# (osd), which turns sideways and upside-down pages upright for the CPU engines. ~13 MB. The fonts of the
# searchable PDF's text layer (app/exports/pdf.py): DejaVu Sans (Latin, Cyrillic, Greek) and Droid Sans Fallback
# (CJK), ~9 MB.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr-eng tesseract-ocr-rus tesseract-ocr-osd \
       fonts-dejavu-core fonts-droid-fallback \
    && rm -rf /var/lib/apt/lists/*

# Only our extra packages, by docker/install_extras.sh (CI runs the same script on a Python 3.10 copy of this
# base: tests/integration/test_image_install.py). The packages the GPU runtime depends on stay as the base image
# has them (docker/protected-packages.txt: paddle, paddleocr, paddlex, numpy, opencv, the CUDA wheels, ...); the
# rest may move when one of ours needs it. A requirement that would change a protected package fails the build
# at once, naming it. rapidocr's opencv-python-headless is left out: the base's opencv-contrib-python is cv2.
COPY requirements.txt /tmp/requirements.txt
COPY docker/install_extras.sh docker/install_plan.py docker/protected-packages.txt /tmp/install/
RUN PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 bash /tmp/install/install_extras.sh /tmp/requirements.txt \
    && python -c "import cv2, numpy, paddle, paddleocr, rapidocr, onnxruntime, tesserocr, fastapi, httpx" \
    && rm -rf /tmp/install /tmp/requirements.txt

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
