#!/usr/bin/env python3
"""Check the environment variables of a Docker RUN before (re)deploying: which ones this service reads,
which it ignores (for example ones left from an earlier service), which start.sh sets itself, and whether
each value would let the service start.

Usage: python scripts/check_env.py VARIABLES_FILE   (NAME=VALUE lines, as in the console; '-' = stdin)

A value that goes on with a '#' comment (``API_KEY=<key>  # note``) is named as such: a console form keeps the
comment as part of the value, which then either stops the service or, for free text such as a key, is used as is.

Needs only pydantic-settings (requirements-client.txt is enough), run from the repository. Values are
never printed. Exit code 0 when every value is valid, 1 when one would stop the service from
starting or carries a comment, 2 for a file that cannot be read.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.settings import EMPTY_IS_A_VALUE, Settings, carries_comment  # noqa: E402

#: Set by start.sh when not given (ML_INFERENCE_ENV_VARS.md, "Внутренние переменные").
INTERNAL = {
    "PADDLE_PDX_CACHE_HOME",
    "PADDLEX_HOME",
    "HF_HOME",
    "PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK",
    "FLAGS_enable_eager_mode",
    "FLAGS_eager_delete_tensor_gb",
    "FLAGS_use_mkldnn",
    "PADDLE_PDX_LOCAL_FONT_FILE_PATH",
    "OMP_THREAD_LIMIT",
    "PYTHON",
}
#: The callers' variables (check_deployment.py, the batch client): the service never reads them.
CLIENT = {"CLOUD_RU_INFERENCE_URL", "CLOUD_RU_IAM_KEY_ID", "CLOUD_RU_IAM_SECRET", "CLOUD_RU_TOKEN", "SERVICE_API_KEY"}
CLIENT |= {"CLOUD_RU_IAM_URL"}


class _GivenOnly(Settings):
    """The settings from the given values alone: not from this shell's environment or a .env file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")


def parse(text: str) -> dict[str, str]:
    """NAME=VALUE lines (blank lines and # comments skipped; quotes around a value removed)."""
    variables: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = LINE.match(line)
        if match is None:
            raise ValueError(f"not a NAME=VALUE line: {line.split('=')[0][:40]!r}")
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        variables[match.group(1)] = value
    return variables


COMMENTED = (
    "the value goes on with ' #…': a comment at the end of the line, which the console keeps as part of the value;"
    " put the comment on a line of its own"
)


def check(variables: dict[str, str]) -> tuple[list[str], bool]:
    """Report lines and whether every value is valid (a value carrying a comment is not)."""
    fields = {name.upper(): name for name in Settings.model_fields}
    lines: list[str] = []
    read = {name: value for name, value in variables.items() if name.upper() in fields}
    problems: dict[str, str] = {}
    try:
        _GivenOnly(**{fields[name.upper()]: value for name, value in read.items()})
    except ValidationError as exc:
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else "?"
            problems[field.upper()] = str(error["msg"])
    commented = {name for name, value in variables.items() if carries_comment(value)}
    for name in sorted(variables):
        if name in commented:
            if name.upper() in problems:
                effect = "the service would not start"
            elif name.upper() in fields:
                effect = "the service would start and use the value with the comment inside"
            elif name in INTERNAL:
                effect = "start.sh would pass it on with the comment inside"
            elif name in CLIENT:
                effect = "a client program's variable"
            else:
                effect = "this service does not read it"
            lines.append(f"COMMENT  {name}: {COMMENTED} ({effect})")
        elif name.upper() in problems:
            lines.append(f"INVALID  {name}: {problems[name.upper()]} (the service would not start)")
        elif name.upper() in fields:
            empty = not variables[name].strip() and fields[name.upper()] not in EMPTY_IS_A_VALUE
            lines.append(f"ok       {name}" + (": empty, so the default" if empty else ""))
        elif name in INTERNAL:
            lines.append(f"internal {name}: start.sh sets it; leave it out of the console unless you mean it")
        elif name in CLIENT:
            lines.append(f"ignored  {name}: a client program's variable, not the service's")
        else:
            lines.append(f"ignored  {name}: this service does not read it (see ML_INFERENCE_ENV_VARS.md)")
    return lines, not problems and not commented


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", help="NAME=VALUE lines; '-' for standard input")
    args = parser.parse_args(argv)
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        variables = parse(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines, valid = check(variables)
    print("\n".join(lines))
    ignored = sum(line.startswith("ignored") for line in lines)
    commented = sum(line.startswith("COMMENT") for line in lines)
    summary = "all values valid" if valid else "INVALID values"
    if commented:
        summary += f"; {commented} carry a comment"
    print(f"{len(variables)} variable(s): {ignored} ignored; {summary}")
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
