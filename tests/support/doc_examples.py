"""The settings of a worked example in the docs, so that tests configure services exactly as the docs say."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def example_env(page: str, heading: str) -> dict[str, str]:
    """The ``NAME=value`` lines of the first ``sh`` block after ``heading`` in ``docs/<page>``."""
    text = (DOCS / page).read_text()
    after = text[text.index(heading) :]
    block = re.search(r"```sh\n(.*?)```", after, flags=re.S)
    assert block is not None, f"no sh block after {heading!r} in {page}"
    pairs = (line.split("=", 1) for line in block.group(1).splitlines() if re.match(r"[A-Z_]+=", line))
    return {name: value for name, value in pairs}
