#!/usr/bin/env bash
# Fail when a tracked file holds something that looks like a secret (detect-secrets, plus the Cloud.ru
# key-pair shape <uuid>:<32 hex>). Test values that must stay carry "# pragma: allowlist secret".
set -euo pipefail
cd "$(dirname "$0")/.."
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "not a git checkout: skipping the secret scan"
    exit 0
fi
hook="${DETECT_SECRETS_HOOK:-.venv/bin/detect-secrets-hook}"
git ls-files -z | xargs -0 "$hook"
if git grep -nIE '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:[0-9a-f]{32}' -- . ':!*.lock'; then
    echo "a Cloud.ru key pair (<tenant_id>:<key_id>) is committed above: replace it with a placeholder" >&2
    exit 1
fi
echo "secret scan: clean"
