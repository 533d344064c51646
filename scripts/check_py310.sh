#!/usr/bin/env bash
# The PaddleOCR-VL base image runs Python 3.10: byte-compile app/ with a 3.10 interpreter when one exists.
set -euo pipefail
for candidate in python3.10 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10*/bin/python3.10; do
    if "$candidate" --version >/dev/null 2>&1; then
        "$candidate" -m compileall -q -x '/__pycache__/' app scripts >/dev/null
        echo "app/ and scripts/ compile on $("$candidate" --version)"
        exit 0
    fi
done
echo "no Python 3.10 interpreter found: skipping the 3.10 compile check (mypy still checks for 3.10)"
