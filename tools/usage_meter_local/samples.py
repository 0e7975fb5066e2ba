"""The READMEs' code blocks, run as printed against the local stack, and their JSON samples.

Every ```bash and ```python block of a README runs, in order, from the checkout that runs
`make dev`, in a shell that has sourced `.local/demo.env` (`API`, `KEY`, `SERVICE_KEY` and the
client's `USAGE_METER_*` variables, as the READMEs say to do first). Two HTML comments, unseen
on a rendered page, say what else a block is:

    <!-- not run: WHY -->   the next block is left out (it deploys to AWS, say), and why
    <!-- sample -->         the next ```json block is the answer of the block before it

`python -m usage_meter_local.samples README.md` runs a README's blocks against the running
stack and prints the README with each sample as the service answers it now; `--write`
writes that README instead. Run it on a fresh stack (`rm -rf .local/dynamodb` first): the samples show the
demo developer's first usage. tests/e2e/test_docs.py runs every README this way on a stack of
its own and fails when a block fails or a sample no longer matches the answer, ids and times
aside (`normalized`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from usage_meter_local import envfile

DEMO_ENV = Path(".local") / "demo.env"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_NOT_RUN = re.compile(r"<!-- not run: (.+?) -->\s*$")
_SAMPLE = re.compile(r"<!-- sample -->\s*$")
_TIME = re.compile(r"^\d{4}-\d{2}(-\d{2})?([T ][0-9:.]+Z?)?$")
VOLATILE = frozenset({"resetsInDays", "currentMinuteUsage", "resets_in_days", "current_minute_usage"})
"""Fields that change with the clock (days left in the month, events in this UTC minute), in the
main API's casing and the compatible surfaces' snake_case."""
TIMEOUT_SECONDS = 120
WIDTH = 96


class Block(BaseModel):
    """One fenced code block of a README."""

    language: str
    code: str
    line: int  # of its opening fence, 1-based
    start: int  # offsets of its code in the README's text
    end: int
    not_run: str | None = None  # why it is left out
    sample: bool = False  # a JSON answer of the block before it


class Outcome(BaseModel):
    """What running one block gave."""

    block: Block
    exit_code: int
    stdout: str
    stderr: str


def blocks(text: str) -> list[Block]:
    """The README's fenced blocks, with their markers."""
    found: list[Block] = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        not_run = _NOT_RUN.search(before)
        found.append(
            Block(
                language=match.group(1),
                code=match.group(2),
                line=text.count("\n", 0, match.start()) + 1,
                start=match.start(2),
                end=match.end(2),
                not_run=not_run.group(1) if not_run else None,
                sample=bool(_SAMPLE.search(before)),
            )
        )
    return found


def runnable(block: Block) -> bool:
    return block.language in ("bash", "python") and block.not_run is None


def demo_environment(checkout: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a README's blocks run in: `base` (default: this process's) plus what
    `source .local/demo.env` exports."""
    env = dict(os.environ if base is None else base)
    env.update(envfile.read(checkout / DEMO_ENV))
    return env


def run_block(block: Block, checkout: Path, env: Mapping[str, str]) -> Outcome:
    """Run one block as a reader pastes it: bash with `set -e` (a failing command fails the
    block), python with the checkout's venv."""
    if block.language == "bash":
        argv = ["bash", "-e", "-o", "pipefail", "-c", block.code]
    else:
        argv = [str(checkout / ".venv" / "bin" / "python"), "-c", block.code]
    done = subprocess.run(
        argv,
        cwd=checkout,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )
    return Outcome(block=block, exit_code=done.returncode, stdout=done.stdout, stderr=done.stderr)


def run_readme(text: str, checkout: Path, env: Mapping[str, str]) -> Iterator[tuple[Outcome, Block | None]]:
    """Run every runnable block in order; each outcome comes with the sample that follows it."""
    found = blocks(text)
    for index, block in enumerate(found):
        if not runnable(block):
            continue
        following = found[index + 1] if index + 1 < len(found) else None
        yield run_block(block, checkout, env), following if following and following.sample else None


def normalized(value: Any) -> Any:
    """`value` with what changes from run to run replaced: dates and times (and the period
    keys made of them), and the fields in VOLATILE."""
    if isinstance(value, dict):
        return {k: f"<{k}>" if k in VOLATILE else normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(item) for item in value]
    if isinstance(value, str) and _TIME.match(value):
        return "<time>"
    return value


def layout(value: Any, indent: int = 0) -> str:
    """JSON as the READMEs print it: on one line when it fits, else its members filled onto
    lines of at most WIDTH characters, a member too long for one line laid out the same way."""
    compact = json.dumps(value, ensure_ascii=False)
    if len(compact) + indent <= WIDTH or not isinstance(value, dict | list) or not value:
        return compact
    inner = indent + 1
    if isinstance(value, dict):
        parts = [f"{json.dumps(k)}: " for k in value]
        items = [p + layout(v, inner + len(p)) for p, v in zip(parts, value.values(), strict=True)]
    else:
        items = [layout(item, inner) for item in value]
    lines = [""]
    for item in items:
        joined = f"{lines[-1]}, {item}" if lines[-1] else item
        if "\n" not in joined and inner + len(joined) + 1 <= WIDTH:
            lines[-1] = joined
        else:
            lines.append(item)
    text = f",\n{' ' * inner}".join(line for line in lines if line)
    return ("{" if isinstance(value, dict) else "[") + text + ("}" if isinstance(value, dict) else "]")


def refreshed(text: str, checkout: Path, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """The README with every sample replaced by the service's answer, and the failures."""
    replacements: list[tuple[Block, str]] = []
    failures: list[str] = []
    for outcome, sample in run_readme(text, checkout, env):
        if outcome.exit_code != 0:
            failures.append(f"line {outcome.block.line}: exit {outcome.exit_code}: {outcome.stderr.strip()}")
        elif sample is not None:
            replacements.append((sample, layout(json.loads(outcome.stdout)) + "\n"))
    for sample, answer in reversed(replacements):
        text = text[: sample.start] + answer + text[sample.end :]
    return text, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a README's blocks against the local stack.")
    parser.add_argument("readme", type=Path)
    parser.add_argument("--write", action="store_true", help="put the answers in the README")
    args = parser.parse_args(argv)
    checkout = Path.cwd()
    if not (checkout / DEMO_ENV).is_file():
        print(f"error: no {DEMO_ENV} here: run `make dev` in this checkout first", file=sys.stderr)
        return 1
    text = args.readme.read_text()
    new, failures = refreshed(text, checkout, demo_environment(checkout))
    for failure in failures:
        print(f"{args.readme}: {failure}", file=sys.stderr)
    if args.write:
        args.readme.write_text(new)
    else:
        print(new)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
