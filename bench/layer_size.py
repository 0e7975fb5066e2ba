"""Size of the shared layer as `sam build` builds it, unzipped and zipped, and its biggest packages.

Runs `sam build CoreLayer` into a temporary folder (pip downloads the arm64 wheels from
PyPI), with this interpreter's bin folder first on PATH: `sam build` needs a `python3.13`
there, which a Python 3.13 venv provides. It then measures the built layer twice:

- as `sam build` leaves it (no .pyc files: Lambda compiles every module at each cold start);
- precompiled as `make build` ships it (`compileall --invalidation-mode unchecked-hash`),
  only when this interpreter is Python 3.13, the runtime's version.

Zipped sizes come from zipping the folder with zipfile (deflate, level 6: what `sam deploy`
uploads is a zip of the same files). Each file is attributed to the distribution that installed
its top-level folder (from the `*.dist-info/RECORD` files); "required by" comes from the
distributions' `Requires-Dist` metadata. Nothing is written outside the temporary folder.

    .venv/bin/python bench/layer_size.py [--top 12]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from usage_meter_local.template import ROOT, TEMPLATE

from report import markdown_table

LAYER = "CoreLayer"
MB = 1024 * 1024
LAMBDA_UNZIPPED_LIMIT = 250 * MB  # function code + all its layers, unzipped
SOURCE_PACKAGE = "usage_meter (this project)"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Measure:
    """One state of the layer: files, bytes unzipped, bytes zipped, and both per distribution."""

    files: int
    unzipped: int
    zipped: int
    by_package: dict[str, tuple[int, int]]


def sam_build(build_dir: Path) -> float:
    """`sam build CoreLayer` into build_dir; returns the seconds it took."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    sam = shutil.which("sam", path=path)
    if sam is None:
        raise SystemExit("sam not found: install the dev dependencies (pip install -e '.[dev]')")
    if shutil.which("python3.13", path=path) is None:
        raise SystemExit("sam build needs a python3.13 on PATH: run this with a Python 3.13 venv")
    command = [sam, "build", LAYER, "--template-file", str(TEMPLATE), "--build-dir", str(build_dir)]
    env = {**os.environ, "PATH": path, "SAM_CLI_TELEMETRY": "0"}
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=build_dir.parent, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return time.monotonic() - started


def distributions(site: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Top-level names -> distribution name, and distribution -> what it requires (normalized)."""
    owner: dict[str, str] = {}
    requires: dict[str, set[str]] = {}
    for info in site.glob("*.dist-info"):
        metadata = HeaderParser().parsestr((info / "METADATA").read_text(errors="replace"))
        name = metadata["Name"]
        for line in (info / "RECORD").read_text().splitlines():
            top = line.split(",", 1)[0].split("/", 1)[0]
            if top and not top.endswith((".dist-info", ".data")) and top != "..":
                owner.setdefault(top, name)
        owner[info.name] = name
        needs = requires.setdefault(normalize(name), set())
        for requirement in metadata.get_all("Requires-Dist") or []:
            spec, _, marker = requirement.partition(";")
            if "extra ==" in marker and "tracer" not in marker:
                continue  # only the [tracer] extra is installed
            if "platform_system" in marker or "sys_platform" in marker:
                continue
            match = _NAME.match(spec.strip())
            if match:
                needs.add(normalize(match.group(0)))
    return owner, requires


def closure(roots: set[str], requires: dict[str, set[str]]) -> set[str]:
    """The roots and everything they require, transitively."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(requires.get(name, set()))
    return seen


def measure(layer: Path, owner: dict[str, str], archive: Path) -> Measure:
    """Zip the layer folder and attribute every file (and its compressed size) to a distribution."""
    site = layer / "python"
    sizes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    unzipped = files = 0
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zipped:
        for path in sorted(p for p in layer.rglob("*") if p.is_file()):
            relative = path.relative_to(layer).as_posix()
            zipped.write(path, relative)
            info = zipped.getinfo(relative)
            top = path.relative_to(site).parts[0] if path.is_relative_to(site) else relative
            package = SOURCE_PACKAGE if top == "usage_meter" else owner.get(top, top)
            sizes[package][0] += info.file_size
            sizes[package][1] += info.compress_size
            unzipped += info.file_size
            files += 1
    return Measure(files, unzipped, archive.stat().st_size, {k: (v[0], v[1]) for k, v in sizes.items()})


def precompile(layer: Path) -> bool:
    """Compile every module as `make build` does; False when this is not the runtime's Python."""
    if sys.version_info[:2] != (3, 13):
        return False
    command = [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    subprocess.run([*command, str(layer)], check=True, capture_output=True, timeout=600)
    return True


def mb(size: int) -> str:
    return f"{size / MB:.1f}"


def requirements() -> set[str]:
    """The distributions layers/core/requirements.txt names."""
    names = set()
    for line in (ROOT / "layers" / "core" / "requirements.txt").read_text().splitlines():
        match = _NAME.match(line.strip())
        if match and not line.lstrip().startswith("#"):
            names.add(normalize(match.group(0).split("[")[0]))
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    parser.add_argument("--top", type=int, default=12, help="how many distributions to list (default 12)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="usage-meter-layer-") as folder:
        build_dir = Path(folder) / "build"
        seconds = sam_build(build_dir)
        layer = build_dir / LAYER
        owner, requires = distributions(layer / "python")
        states = [("as `sam build` leaves it (no .pyc)", measure(layer, owner, Path(folder) / "built.zip"))]
        if precompile(layer):
            states.append(
                ("precompiled, as `make build` ships it", measure(layer, owner, Path(folder) / "pyc.zip"))
            )

    print(f"{LAYER}: `sam build {LAYER}` took {seconds:.0f} s (downloads included)")
    print(
        markdown_table(
            ["layer", "files", "unzipped MB", "zipped MB", "share of Lambda's 250 MB (unzipped)"],
            [
                [
                    name,
                    str(m.files),
                    mb(m.unzipped),
                    mb(m.zipped),
                    f"{m.unzipped / LAMBDA_UNZIPPED_LIMIT:.0%}",
                ]
                for name, m in states
            ],
        )
    )
    print()
    direct = requirements()
    final = states[-1][1]
    sizes = {normalize(k): v for k, v in final.by_package.items()}
    required_by: dict[str, set[str]] = defaultdict(set)
    for name, needs in requires.items():
        for need in needs:
            required_by[need].add(name)
    biggest = sorted(final.by_package.items(), key=lambda kv: -kv[1][0])[: args.top]
    rows = []
    for package, (unzipped, zipped) in biggest:
        key = normalize(package)
        parents = sorted(required_by.get(key, set()))
        if key in direct:
            parents.insert(0, "requirements.txt")
        rows.append(
            [package, mb(unzipped), mb(zipped), f"{unzipped / final.unzipped:.0%}", ", ".join(parents)]
        )
    print(f"Biggest distributions ({states[-1][0]}):")
    print(markdown_table(["distribution", "unzipped MB", "zipped MB", "share", "required by"], rows))
    print()
    rows = []
    for root in sorted(direct):
        others = closure(direct - {root}, requires)
        alone = sorted(closure({root}, requires) - others)
        unzipped = sum(sizes.get(name, (0, 0))[0] for name in alone)
        zipped = sum(sizes.get(name, (0, 0))[1] for name in alone)
        rows.append([root, mb(unzipped), mb(zipped), ", ".join(alone)])
    shared = sorted(set(sizes) & closure(direct, requires) - {n for r in rows for n in r[3].split(", ")})
    rows.append(
        [
            "(shared by several)",
            mb(sum(sizes[n][0] for n in shared)),
            mb(sum(sizes[n][1] for n in shared)),
            ", ".join(shared),
        ]
    )
    print("What each line of layers/core/requirements.txt brings that no other line needs:")
    print(markdown_table(["requirement", "unzipped MB", "zipped MB", "distributions"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
