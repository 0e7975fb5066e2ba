"""The local stack's env file, `.local/env`: where a running `make dev` serves.

`make dev` writes it once it serves: the table names, the DynamoDB Local endpoint and the
ports, as `export NAME=value` lines a shell can `source`. `make rollup` finds the running
engine through it, and the admin CLI's `--local` reads it. It holds no credentials:
DynamoDB Local takes any, and sourcing the file must not replace a shell's real ones.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

LOCATION = Path(".local") / "env"  # inside the checkout that runs `make dev`


def write(path: Path, values: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in values.items()))


def read(path: Path) -> dict[str, str]:
    """The variables of an env file written by `write` (comments and blank lines skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["export"]:
            words = words[1:]
        for word in words:
            name, sep, value = word.partition("=")
            if sep:
                values[name] = value
    return values


def find(start: Path) -> Path | None:
    """The `.local/env` of `start` or of its nearest parent that has one (as git finds .git)."""
    for folder in (start, *start.parents):
        candidate = folder / LOCATION
        if candidate.is_file():
            return candidate
    return None
