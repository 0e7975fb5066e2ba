"""Every documented command works as printed (issue 21): the bash and Python blocks of
README.md, clients/python/README.md and examples/metered_api/README.md run, in order, as a
newcomer pastes them into the checkout that runs `make dev` (after `source .local/demo.env`),
and every JSON sample of a README is what the service answers to the block before it, ids
and times aside.

One fresh stack for the module (the samples show the demo developer's first usage); its
folder gets the checkout's `.venv` and `examples/` as links, so paths read as in a checkout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from usage_meter_local.samples import (
    Block,
    Outcome,
    blocks,
    demo_environment,
    normalized,
    run_readme,
    runnable,
)
from usage_meter_local.template import ROOT

from e2e.conftest import running_stack
from helpers import shell_without_aws

READMES = ("README.md", "clients/python/README.md", "examples/metered_api/README.md")
Ran = list[tuple[Outcome, Block | None]]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("checkout")
    for name in (".venv", "examples"):
        (folder / name).symlink_to(ROOT / name)
    with running_stack(folder) as info:
        yield info


@pytest.fixture(scope="module")
def env(checkout: dict[str, Any]) -> dict[str, str]:
    folder = Path(checkout["folder"])
    return demo_environment(folder, shell_without_aws(folder))


@pytest.fixture(scope="module")
def main_readme(checkout: dict[str, Any], env: dict[str, str]) -> Ran:
    """README.md's blocks, run first: its samples are the fresh stack's answers."""
    return list(run_readme((ROOT / "README.md").read_text(), Path(checkout["folder"]), env))


def usage_of(env: dict[str, str]) -> dict[str, Decimal]:
    answer = httpx.get(f"{env['API']}/v1/usage", headers={"X-API-Key": env["KEY"]})
    assert answer.status_code == 200, answer.text
    metrics = json.loads(answer.text, parse_float=Decimal)["metrics"]
    return {name: Decimal(str(entry["consumed"])) for name, entry in metrics.items()}


def failures(ran: Ran) -> list[str]:
    return [
        f"block at line {o.block.line} exited {o.exit_code}:\n{o.block.code}\n{o.stdout}\n{o.stderr}"
        for o, _ in ran
        if o.exit_code != 0
    ]


def test_every_block_of_the_readme_runs_as_printed(main_readme: Ran) -> None:
    assert failures(main_readme) == []
    assert len(main_readme) == len([b for b in blocks((ROOT / "README.md").read_text()) if runnable(b)])
    for outcome, _ in main_readme:
        if outcome.block.code.lstrip().startswith("curl"):
            assert '"error"' not in outcome.stdout, outcome  # every curl of the README is a success


def test_every_readme_sample_is_the_services_answer(main_readme: Ran) -> None:
    compared = 0
    for outcome, sample in main_readme:
        if sample is None:
            continue
        assert normalized(json.loads(outcome.stdout)) == normalized(json.loads(sample.code)), (
            f"README.md line {sample.line}: the sample differs from the answer; "
            "regenerate with `python -m usage_meter_local.samples README.md --write` on a fresh `make dev`\n"
            f"answer: {outcome.stdout}"
        )
        compared += 1
    assert compared == sum(b.sample for b in blocks((ROOT / "README.md").read_text())) == 11


def test_every_block_of_the_client_readme_runs_as_printed(
    main_readme: Ran, checkout: dict[str, Any], env: dict[str, str]
) -> None:
    ran = list(run_readme((ROOT / "clients/python/README.md").read_text(), Path(checkout["folder"]), env))
    assert failures(ran) == []
    assert len(ran) == 8


def test_the_example_runs_as_printed_twice_and_counts_once(
    main_readme: Ran, checkout: dict[str, Any], env: dict[str, str]
) -> None:
    text = (ROOT / "examples/metered_api/README.md").read_text()
    before = usage_of(env)
    for _ in range(2):  # pasted twice: the same folder, and a duplicate the second time
        ran = list(run_readme(text, Path(checkout["folder"]), env))
        assert failures(ran) == []
        assert len(ran) == 4
    after = usage_of(env)
    assert after["api_calls"] - before["api_calls"] == 1
    assert after["tokens"] - before["tokens"] == 10


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/nowhere"), ("DELETE", "/v1/usage")])
def test_the_gateways_own_answers_are_as_documented(checkout: dict[str, Any], method: str, path: str) -> None:
    """README "Answers from the gateway": an unknown route or method is the gateway's 404."""
    answer = httpx.request(method, f"{checkout['base']}{path}")
    assert (answer.status_code, answer.json()) == (404, {"message": "Not Found"})
    assert answer.headers["apigw-requestid"]
