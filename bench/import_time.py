"""Cold import time of every function's handler module, next to `import boto3` alone.

For each functions/<name>/ folder, a fresh interpreter runs `python -X importtime -c "import app"`
with that folder as its working directory (so the folder is on the subprocess's own path, as
in Lambda) and the function's environment from template.yaml. The time of an import is the
sum of the cumulative times of the top-level imports the statement triggers (those a bare
`python -c pass` does not do already): it includes executing the module body, e.g. building
the resolver or the OpenAPI document. Each figure is the median of N runs (default 5), after
one unmeasured run that writes the bytecode caches (none with --no-bytecode).

The subprocess looks like Lambda (LAMBDA_TASK_ROOT and AWS_LAMBDA_FUNCTION_NAME set), and two
tracing settings are measured:

- traced: as deployed with `Tracing: Active`: Powertools' Tracer patches, through the X-Ray
  SDK, every library it supports that it finds installed;
- untraced: POWERTOOLS_TRACE_DISABLED=true, as if tracing were turned off.

Outside Lambda (no LAMBDA_TASK_ROOT, as in the tests) importing the X-Ray SDK also builds a
botocore X-Ray client for its sampling rules: about 90 ms that Lambda never pays, hence the
Lambda variables in both settings.

By default the subprocesses use this interpreter with its installed packages (a dev venv
holds more than a layer: the X-Ray SDK patches what it finds, and botocore picks up awscrt
when installed). `--layer DIR` runs them with `python -S` and only DIR, the layer's source
folder and the function's folder on the path, where DIR is a `pip install --target` of
layers/core/requirements.txt: the same packages the deployed layer holds. `--no-bytecode`
(with `--layer`) imports from a copy of the layer, the package and the function folders
without any .pyc and with PYTHONDONTWRITEBYTECODE=1, so every module outside the standard
library is compiled at each import: a `sam build` layer holds no .pyc, and Lambda cannot write
any in its read-only /opt and /var/task.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from usage_meter_local.template import ROOT, load, resources, table_logical_ids

from report import markdown_table

FUNCTIONS = ROOT / "functions"
LAYER_SOURCE = ROOT / "layers" / "core"
_LINE = re.compile(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)")
_KEPT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


@dataclass(frozen=True)
class Layout:
    """Where the subprocesses import from: this interpreter's packages (`path` None), or with
    `python -S` only the folders of `path`; `no_bytecode`: no .pyc anywhere but the stdlib."""

    functions: Path
    path: list[Path] | None = None
    no_bytecode: bool = False


def stripped_copy(layer: Path, into: Path) -> Layout:
    """The layer, the usage_meter package and the function folders copied without bytecode."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(layer, into / "layer", ignore=skip)
    shutil.copytree(LAYER_SOURCE / "usage_meter", into / "source" / "usage_meter", ignore=skip)
    shutil.copytree(FUNCTIONS, into / "functions", ignore=skip)
    return Layout(into / "functions", [into / "layer", into / "source"], no_bytecode=True)


@dataclass(frozen=True)
class Target:
    """One module to import cold, from a working directory, with the function's environment."""

    label: str
    module: str
    cwd: Path
    env: dict[str, str]
    traced_env: dict[str, str] | None  # None: no traced variant (boto3 alone)


def top_level_imports(stderr: str) -> dict[str, int]:
    """Cumulative microseconds of each top-level import in `-X importtime` output."""
    found: dict[str, int] = {}
    for line in stderr.splitlines():
        match = _LINE.match(line)
        if match and not match.group(2):
            found[match.group(3)] = found.get(match.group(3), 0) + int(match.group(1))
    return found


def run_python(code: str, cwd: Path, env: dict[str, str], layout: Layout) -> str:
    """Run `python [-S] -X importtime -c code`; its stderr."""
    command = [sys.executable, *(["-S"] if layout.path else []), "-X", "importtime", "-c", code]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{code!r} in {cwd} failed:\n{done.stderr[-3000:]}")
    return done.stderr


def import_ms(module: str, cwd: Path, env: dict[str, str], layout: Layout, startup: set[str]) -> float:
    """The time one fresh interpreter takes for `import <module>`, in ms."""
    imports = top_level_imports(run_python(f"import {module}", cwd, env, layout))
    return sum(us for name, us in imports.items() if name not in startup) / 1000


def measure(found: list[Target], layout: Layout, runs: int) -> dict[tuple[str, bool], float]:
    """Median import time of every target and tracing setting, keyed by (label, traced).

    Runs go round-robin over the targets, so background load spreads over all of them alike.
    """
    startup = set(top_level_imports(run_python("pass", ROOT, found[0].env, layout)))
    variants = [(t, False, t.env) for t in found]
    variants += [(t, True, t.traced_env) for t in found if t.traced_env is not None]
    for target in [] if layout.no_bytecode else found:  # one unmeasured import: writes bytecode
        run_python(f"import {target.module}", target.cwd, target.env, layout)
    samples: dict[tuple[str, bool], list[float]] = {(t.label, traced): [] for t, traced, _ in variants}
    for _ in range(runs):
        for target, traced, env in variants:
            samples[target.label, traced].append(import_ms(target.module, target.cwd, env, layout, startup))
    return {key: statistics.median(values) for key, values in samples.items()}


# ---- targets from template.yaml --------------------------------------------------------------


def _resolve(variables: dict[str, Any], refs: dict[str, str]) -> dict[str, str]:
    params = {k: str(v.get("Default", "")) for k, v in load().get("Parameters", {}).items()}
    env = {}
    for key, value in variables.items():
        if isinstance(value, dict) and "Ref" in value:
            env[key] = refs.get(value["Ref"]) or params.get(value["Ref"]) or str(value["Ref"])
        else:
            env[key] = str(value)
    return env


def base_env(layout: Layout) -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEPT if k in os.environ}
    env.update({"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"})
    if layout.path:
        env["PYTHONPATH"] = os.pathsep.join(str(folder.resolve()) for folder in layout.path)
    if layout.no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def targets(layout: Layout) -> list[Target]:
    """boto3 alone, then every function folder with its handler module and environment."""
    refs = {logical_id: f"bench-{logical_id}" for logical_id in table_logical_ids()}
    globals_fn: dict[str, Any] = load().get("Globals", {}).get("Function", {})
    by_folder = {
        (ROOT / props["CodeUri"]).resolve().name: (logical_id, props)
        for logical_id, fn in resources("AWS::Serverless::Function").items()
        for props in [fn["Properties"]]
    }
    untraced = {**base_env(layout), "POWERTOOLS_TRACE_DISABLED": "true"}
    found = [Target("import boto3", "boto3", ROOT, untraced, None)]
    for folder in sorted(p.parent for p in layout.functions.glob("*/app.py")):
        logical_id, props = by_folder.get(folder.name, (folder.name, {}))
        handler = str(props.get("Handler", globals_fn.get("Handler", "app.lambda_handler")))
        variables = {
            **globals_fn.get("Environment", {}).get("Variables", {}),
            **props.get("Environment", {}).get("Variables", {}),
        }
        # Lambda's own variables in both settings: outside Lambda, the X-Ray SDK's recorder
        # builds a botocore X-Ray client at import (sampling rules), which Lambda never does.
        env = {
            **base_env(layout),
            **_resolve(variables, refs),
            "LAMBDA_TASK_ROOT": str(folder),
            "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        }
        traced = props.get("Tracing", globals_fn.get("Tracing")) == "Active"
        found.append(
            Target(
                label=f"functions/{folder.name} ({logical_id})",
                module=handler.rsplit(".", 1)[0],
                cwd=folder,
                env={**env, "POWERTOOLS_TRACE_DISABLED": "true"},
                traced_env=env if traced else None,
            )
        )
    return found


# ---- output -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("-n", "--runs", type=int, default=5, help="runs per figure (median), default 5")
    parser.add_argument(
        "--layer",
        type=Path,
        help="a `pip install --target` of layers/core/requirements.txt: import from it alone (python -S)",
    )
    parser.add_argument(
        "--no-bytecode",
        action="store_true",
        help="with --layer: import from a copy without .pyc files, as `sam build` ships the layer",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.layer and not args.layer.is_dir():
        parser.error(f"--layer {args.layer}: no such folder")
    if args.no_bytecode and not args.layer:
        parser.error("--no-bytecode needs --layer")

    with ExitStack() as stack:
        if args.no_bytecode:
            copy = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="usage-meter-bench-")))
            layout = stripped_copy(args.layer, copy)
        elif args.layer:
            layout = Layout(FUNCTIONS, [args.layer, LAYER_SOURCE])
        else:
            layout = Layout(FUNCTIONS)
        found = targets(layout)
        medians = measure(found, layout, args.runs)
    boto3_ms = medians[found[0].label, False]
    header = ["module", "traced ms", "x boto3", "untraced ms", "x boto3"]
    rows = [["import boto3", "", "", f"{boto3_ms:.0f}", "1.0"]]
    for target in found[1:]:
        untraced = medians[target.label, False]
        traced = medians.get((target.label, True))
        rows.append(
            [
                target.label,
                "-" if traced is None else f"{traced:.0f}",
                "-" if traced is None else f"{traced / boto3_ms:.1f}",
                f"{untraced:.0f}",
                f"{untraced / boto3_ms:.1f}",
            ]
        )
    where = f"only {args.layer} (python -S)" if args.layer else f"the packages of {sys.prefix}"
    if args.no_bytecode:
        where += ", without bytecode (compiled at every import, as from a `sam build` layer)"
    print(
        f"Cold import of each handler module: median of {args.runs} fresh interpreters, "
        f"Python {sys.version.split()[0]}, importing from {where}"
    )
    print(markdown_table(header, rows))
    print(
        "traced: as deployed (Tracing: Active; Powertools Tracer imports the X-Ray SDK and patches); "
        "untraced: POWERTOOLS_TRACE_DISABLED=true; '-': the function is not traced."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
