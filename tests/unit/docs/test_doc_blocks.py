"""The blocks of variables the documents tell a reader to paste (into the Docker RUN form, a ``.env`` file,
``scripts/check_env.py``) pass the checker as they stand: no comment at the end of a line, no value that would stop
the service. And every link of the deployment guide to one of its own sections leads to a heading.

A variable block is a fenced ``bash``/``sh``/``env``/``dotenv`` block (or one without a language) whose lines are all
``NAME=value`` lines, blank lines or comment lines, or the body of a here-document (``cat > .env <<'EOF'``) in any
such block. Placeholders such as ``<bucket_name>`` are checked as check_env.py checks them: as text.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

import pytest

from scripts.check_env import check, parse
from tests.support.server import ROOT

DOCS = ("CLOUDRU_DEPLOYMENT_GUIDE.md", "ML_INFERENCE_ENV_VARS.md", "README.md")
FENCE = re.compile(r"^( *)```([\w-]*)[^\n]*\n(.*?)^ *```", re.MULTILINE | re.DOTALL)
SHELL_LIKE = {"", "bash", "sh", "shell", "env", "dotenv"}
VARIABLE = re.compile(r"^(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*=")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)(\w+)\1[^\n]*\n(.*?)^\s*\2\s*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\((CLOUDRU_DEPLOYMENT_GUIDE\.md)?#([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.MULTILINE)
FENCED = re.compile(r"^ *```.*?^ *```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One block of a document: where it starts and its text, indentation removed."""

    doc: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}"


def shell_blocks(doc: str, markdown: str | None = None) -> list[Block]:
    """The fenced shell-like blocks of ``doc`` (or of ``markdown`` given as that document's text)."""
    text = (ROOT / doc).read_text(encoding="utf-8") if markdown is None else markdown
    found = []
    for match in FENCE.finditer(text):
        if match.group(2) in SHELL_LIKE:
            line = text.count("\n", 0, match.start()) + 2
            found.append(Block(doc, line, textwrap.dedent(match.group(3))))
    return found


def is_variables(text: str) -> bool:
    """Only ``NAME=value`` lines (at least one), blank lines and comment lines; no command continued or run."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return bool(lines) and all(
        VARIABLE.match(line) and not line.endswith("\\") and "$(" not in line and " " not in line.split("=", 1)[0]
        for line in lines
    )


def variable_blocks(doc: str, markdown: str | None = None) -> list[Block]:
    found = []
    for block in shell_blocks(doc, markdown):
        if is_variables(block.text):
            found.append(block)
        for here in HEREDOC.finditer(block.text):
            if is_variables(here.group(3)):
                found.append(Block(block.doc, block.line + block.text.count("\n", 0, here.start()) + 1, here.group(3)))
    return found


BLOCKS = [block for doc in DOCS for block in variable_blocks(doc)]


def test_the_blocks_to_paste_are_found() -> None:
    """The blocks this test exists for: the guide's Docker RUN, S3, VLM and knowledge-base variables and the client's
    .env, the reference's usual set and the README's GPU settings."""
    names = {str(block): set(parse(block.text)) for block in BLOCKS}
    wanted = [
        ("CLOUDRU_DEPLOYMENT_GUIDE.md", {"OCR_ENGINE", "OCR_DEVICE", "API_KEY", "VL_BATCH_PAGES"}),
        ("CLOUDRU_DEPLOYMENT_GUIDE.md", {"CLOUDRU_S3_ENDPOINT", "CLOUDRU_S3_ACCESS_KEY", "CLOUDRU_S3_SECRET_KEY"}),
        ("CLOUDRU_DEPLOYMENT_GUIDE.md", {"VL_BACKEND", "VL_SERVER_URL", "VL_IAM_KEY_ID", "VL_IAM_SECRET"}),
        ("CLOUDRU_DEPLOYMENT_GUIDE.md", {"RAG_EXPORT_PREFIX", "RAG_EXPORT_FORMAT"}),
        ("CLOUDRU_DEPLOYMENT_GUIDE.md", {"CLOUD_RU_INFERENCE_URL", "CLOUD_RU_IAM_KEY_ID", "SERVICE_API_KEY"}),
        ("ML_INFERENCE_ENV_VARS.md", {"OCR_ENGINE", "API_KEY", "LOG_FORMAT", "CLOUDRU_S3_ACCESS_KEY"}),
        ("README.md", {"OCR_ENGINE", "OCR_DEVICE"}),
    ]
    for doc, variables in wanted:
        assert any(where.startswith(doc) and variables <= found for where, found in names.items()), (doc, variables)


@pytest.mark.parametrize("block", BLOCKS, ids=str)
def test_a_block_passes_the_checker_as_pasted(block: Block) -> None:
    lines, valid = check(parse(block.text))
    assert valid, f"{block}:\n" + "\n".join(line for line in lines if not line.startswith(("ok", "ignored", "int")))


def test_no_variable_line_of_a_shell_block_ends_in_a_comment() -> None:
    """Also in blocks of commands: a ``NAME=value  # …`` line copied into a form or a file carries its comment."""
    commented = [
        f"{block}: {line.strip()[:60]}"
        for doc in DOCS
        for block in shell_blocks(doc)
        for line in block.text.splitlines()
        if VARIABLE.match(line.strip()) and re.search(r"\s#", line)
    ]
    assert commented == []


def test_a_comment_at_the_end_of_a_variable_line_is_caught() -> None:
    """The extraction and the checker together fail a block like the ones this test guards against."""
    markdown = (
        "text\n\n   ```bash\n   OCR_ENGINE=paddleocr-vl\n   API_KEY=<random_string>   # the service's own key\n   ```\n"
    )
    [block] = variable_blocks("example.md", markdown)
    lines, valid = check(parse(block.text))
    assert not valid and any(line.startswith("COMMENT  API_KEY") for line in lines)
    mixed = "```bash\ngit clone <url>\nCLOUD_RU_TOKEN=<key> \\\n    python x.py\n```\n"
    assert variable_blocks("example.md", mixed) == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")


def test_every_link_to_a_section_of_the_guide_leads_to_a_heading() -> None:
    guide = (ROOT / "CLOUDRU_DEPLOYMENT_GUIDE.md").read_text(encoding="utf-8")
    anchors = {slug(title) for title in HEADING.findall(FENCED.sub("", guide))}
    broken = []
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        for target, anchor in LINK.findall(text):
            if (doc == "CLOUDRU_DEPLOYMENT_GUIDE.md" or target) and anchor not in anchors:
                broken.append(f"{doc}: #{anchor}")
    assert broken == []


def test_the_guide_links_are_many() -> None:
    """The table of contents and the short path link into the sections (so the check above is not empty)."""
    guide = (ROOT / "CLOUDRU_DEPLOYMENT_GUIDE.md").read_text(encoding="utf-8")
    assert len(LINK.findall(guide)) >= 30
