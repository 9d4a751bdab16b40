"""Run the docs' shell walkthroughs and check (or rewrite) the outputs they show.

A walkthrough is a sequence of fenced ```bash blocks, each preceded by a marker comment:

    <!-- docs-run: NAME -->            a step of walkthrough NAME (its steps run in order, in one bash)
    <!-- docs-run: NAME server -->     a step that starts a server: run in the background, the next
                                       step starts once http://127.0.0.1:PORT/readyz answers 200
    <!-- docs-output: NAME -->         the fenced block below is the stdout of NAME's previous step
    <!-- docs-output: NAME subset -->  ... shortened: shown keys and the first items of shown lists only
    <!-- docs-skip: REASON -->         a ```bash block that is not run (a cluster, a download, a benchmark)

Every ```bash block of README.md and docs/*.md carries one of `docs-run` or `docs-skip`.

Each walkthrough runs in a fresh copy of the repository (what a clone holds; `.venv` linked to the
one running this script), with `.venv/bin` first on PATH, under `set -euo pipefail`. The docs say
port 8000; each run gets a free port instead (`:8000` and `--port 8000` are rewritten, and PORT is
set). A server step that reads `scripts/serve.sh` runs the serving command that script ends with:
the copy is already bootstrapped. JSON outputs are compared as parsed values (floats to 1e-9, the
string "…" matches anything), other outputs line by line.

    python scripts/docs_outputs.py            # run every walkthrough, report differences (exit 1)
    python scripts/docs_outputs.py --write    # rewrite the shown outputs from what the commands print
    python scripts/docs_outputs.py --only README.md:readme
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Block", "Walkthrough", "check_outputs", "compare", "doc_files", "parse", "run_walkthrough", "unmarked_blocks",
]

ROOT = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"^<!--\s*docs-(run|output|skip):\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(\S*)")
WILDCARD = "…"
TOLERANCE = 1e-9
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", ".venv-bench", "__pycache__", "site", ".mypy_cache", ".ruff_cache", ".pytest_cache",
    ".hypothesis", "*.egg-info", "runs", "demo_data", "build", "dist",
)
STEP_MARK = "@@docs-step {}@@"


@dataclass(eq=False)
class Block:
    """One fenced block: where it is, its body, and the marker above it."""

    path: Path
    start: int  # index of the opening fence line
    end: int  # index of the closing fence line
    lang: str
    body: str
    kind: str | None = None  # run | output | skip | None (no marker)
    name: str = ""
    flags: tuple[str, ...] = ()
    ordinal: int = 0  # its place among the file's fenced blocks


@dataclass
class Walkthrough:
    """The steps of one walkthrough, with the output block shown after each step (if any)."""

    path: Path
    name: str
    steps: list[Block] = field(default_factory=list)
    outputs: dict[int, Block] = field(default_factory=dict)  # step index -> shown output

    @property
    def key(self) -> str:
        return f"{_rel(self.path)}:{self.name}"

    @property
    def slow(self) -> bool:
        return any("slow" in s.flags for s in self.steps)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def parse(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the docs marker on the line above it (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        block = Block(path, i, j, fence.group(1), "\n".join(lines[i + 1 : j]), ordinal=len(blocks))
        above = MARKER.match(lines[i - 1]) if i > 0 else None
        if above:
            block.kind = above.group(1)
            words = above.group(2).split()
            if block.kind != "skip" and words:
                block.name, block.flags = words[0], tuple(words[1:])
            else:
                block.name = above.group(2)
        blocks.append(block)
        i = j + 1
    return blocks


def walkthroughs(paths: list[Path]) -> list[Walkthrough]:
    found: dict[tuple[Path, str], Walkthrough] = {}
    for path in paths:
        for block in parse(path):
            if block.kind == "run":
                found.setdefault((path, block.name), Walkthrough(path, block.name)).steps.append(block)
            elif block.kind == "output":
                walk = found.get((path, block.name))
                if walk is None or not walk.steps:
                    raise ValueError(
                        f"{path}:{block.start + 1}: docs-output {block.name!r} has no docs-run step above it"
                    )
                walk.outputs[len(walk.steps) - 1] = block
    return list(found.values())


def unmarked_blocks(paths: list[Path]) -> list[str]:
    """`file:line` of every ```bash block (or pasted `$ command` session) neither run nor skipped with a reason."""
    return [
        f"{_rel(b.path)}:{b.start + 1}"
        for path in paths for b in parse(path)
        if (b.lang in ("bash", "sh", "shell", "console") and b.kind not in ("run", "skip"))
        or (b.kind == "skip" and not b.name)
        or (b.kind is None and any(line.startswith("$ ") for line in b.body.splitlines()))  # a pasted session
    ]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_command(root: Path) -> str:
    """The serving command scripts/serve.sh ends with (after its bootstrap)."""
    for line in (root / "scripts" / "serve.sh").read_text().splitlines():
        if line.startswith("exec "):
            return line.removeprefix("exec ").replace('"$@"', "").strip()
    raise ValueError("scripts/serve.sh: no `exec` line to take the serving command from")


def _script(walk: Walkthrough, root: Path, port: int) -> str:
    parts = ["set -euo pipefail", f"cd {root}"]
    for index, step in enumerate(walk.steps):
        body = re.sub(r"(127\.0\.0\.1|localhost):8000\b", rf"\g<1>:{port}", step.body)
        body = re.sub(r"--port 8000\b", f"--port {port}", body)
        parts.append(f"printf '\\n{STEP_MARK.format(index)}\\n'")
        if "server" in step.flags:
            if re.sub(r"#.*", "", body).strip() == "scripts/serve.sh":
                body = _serve_command(root)
            parts.append(f"( {body}\n) >>{root}/.docs-server.log 2>&1 &")
            parts.append(
                f"for _ in $(seq 1 600); do curl -sf -o /dev/null http://127.0.0.1:{port}/readyz && break;"
                " sleep 0.1; done"
            )
            parts.append(f"curl -sf -o /dev/null http://127.0.0.1:{port}/readyz")
        else:
            parts.append(body)
    parts.append(f"printf '\\n{STEP_MARK.format(len(walk.steps))}\\n'")
    return "\n".join(parts) + "\n"


def _stop_group(pgid: int, timeout: float = 20.0) -> None:
    """SIGTERM a walkthrough's process group and wait until none of it runs (zombies aside): a draining
    server still writes into the copy, which is deleted next. SIGKILL after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = stat.read_text().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
                running = running or (fields[0] != "Z" and int(fields[2]) == pgid)
        if not running:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run_walkthrough(walk: Walkthrough, *, timeout: float = 600.0) -> list[str]:
    """Run every step in a fresh copy of the repository; the stdout of each step."""
    with tempfile.TemporaryDirectory(prefix="fr-docs-") as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(ROOT, root, ignore=COPY_IGNORE, symlinks=True)
        # The copy shares this interpreter's environment: an install from the copy would re-point it
        # (an editable install) at a folder deleted below. Any walkthrough that tries fails instead.
        bootstrap = root / "scripts" / "bootstrap.sh"
        bootstrap.write_text(
            "#!/usr/bin/env bash\n"
            "echo 'docs walkthroughs run in an installed environment: no install here' >&2\nexit 97\n"
        )
        venv = Path(sys.prefix).resolve()
        (root / ".venv").symlink_to(venv, target_is_directory=True)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUSIONRANK_")}
        env.update(
            PATH=f"{root}/.venv/bin:{env.get('PATH', '/usr/bin:/bin')}", PYTHONPATH=str(root), PORT=str(port),
            COLUMNS="120", TERM="dumb", NO_COLOR="1", HOME=env.get("HOME", tmp), TMPDIR=tmp,
            PIP_NO_INDEX="1",  # a walkthrough that installs anything fails rather than change the shared venv
        )
        proc = subprocess.Popen(  # noqa: S603 - the docs' own commands, in a throw-away copy
            ["bash", "-c", _script(walk, root, port)],  # noqa: S607
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=root, start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise RuntimeError(f"{walk.key}: timed out after {timeout:.0f} s\n{stderr[-4000:]}") from None
        finally:
            _stop_group(proc.pid)  # a server step's process, still in the background
        server_log = root / ".docs-server.log"
        log = server_log.read_text(errors="replace")[-3000:] if server_log.exists() else ""
        pieces = re.split(r"\n@@docs-step (\d+)@@\n", stdout)
        outputs = {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}
        if proc.returncode != 0 or len(walk.steps) not in outputs:
            failed = max(outputs, default=0)
            step = walk.steps[min(failed, len(walk.steps) - 1)]
            raise RuntimeError(
                f"{walk.key}: step at {step.path.name}:{step.start + 1} failed (exit {proc.returncode})\n"
                f"--- step:\n{step.body}\n--- stdout:\n{outputs.get(failed, stdout)[-3000:]}\n"
                f"--- stderr:\n{stderr[-3000:]}\n--- server log:\n{log}"
            )
        return [outputs[i] for i in range(len(walk.steps))]


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]


def compare(shown: Any, actual: Any, *, subset: bool, where: str = "$") -> list[str]:
    """Differences between a shown JSON value and the actual one (floats to 1e-9, "…" matches anything)."""
    if shown == WILDCARD:
        return []
    if isinstance(shown, dict) and isinstance(actual, dict):
        problems = [] if subset or shown.keys() == actual.keys() else [
            f"{where}: keys {sorted(shown)} shown, {sorted(actual)} answered"
        ]
        for key in shown:
            if key not in actual:
                problems.append(f"{where}.{key}: shown but not answered")
            else:
                problems += compare(shown[key], actual[key], subset=subset, where=f"{where}.{key}")
        return problems
    if isinstance(shown, list) and isinstance(actual, list):
        if len(shown) > len(actual) or (not subset and len(shown) != len(actual)):
            return [f"{where}: {len(shown)} items shown, {len(actual)} answered"]
        return [p for i, s in enumerate(shown) for p in compare(s, actual[i], subset=subset, where=f"{where}[{i}]")]
    if isinstance(shown, bool) or isinstance(actual, bool):  # True == 1 in Python, not in JSON
        if shown is actual:
            return []
    elif isinstance(shown, int | float) and isinstance(actual, int | float):
        if math.isclose(shown, actual, rel_tol=TOLERANCE, abs_tol=TOLERANCE):
            return []
    elif shown == actual:
        return []
    return [f"{where}: shown {shown!r}, answered {actual!r}"]


def _project(shown: Any, actual: Any, subset: bool) -> Any:
    """`actual` as it should be shown: the shown "…" placeholders kept; cut to the shown keys and list
    lengths when the shown output is a shortened one (subset)."""
    if shown == WILDCARD:
        return WILDCARD
    if isinstance(shown, dict) and isinstance(actual, dict):
        keys = [k for k in shown if k in actual] if subset else list(actual)
        return {k: _project(shown[k], actual[k], subset) if k in shown else actual[k] for k in keys}
    if isinstance(shown, list) and isinstance(actual, list):
        size = min(len(shown), len(actual)) if subset else len(actual)
        return [_project(shown[i], actual[i], subset) if i < len(shown) else actual[i] for i in range(size)]
    return actual


def _dump(value: Any, depth: int = 0, max_depth: int = 2) -> str:
    """JSON on one line when it fits in 120 characters, else its first `max_depth` levels one item a line."""
    inline = json.dumps(value, ensure_ascii=False)
    if depth >= max_depth or not isinstance(value, dict | list) or len(inline) + 2 * depth <= 120:
        return inline
    pad = "  " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {_dump(v, depth + 1, max_depth)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * depth + "}"
    items = [f"{pad}{_dump(v, depth + 1, max_depth)}" for v in value]
    return "[\n" + ",\n".join(items) + "\n" + "  " * depth + "]"


def check_outputs(walk: Walkthrough, outputs: list[str]) -> tuple[list[str], dict[Block, str]]:
    """Differences between shown and actual outputs, and the text each shown block would be rewritten to."""
    problems: list[str] = []
    rewrites: dict[Block, str] = {}
    for index, block in walk.outputs.items():
        actual_text = outputs[index].strip("\n")
        where = f"{_rel(block.path)}:{block.start + 1}"
        if block.lang == "json":
            try:
                actual = _parse_json(actual_text)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: the step printed no JSON ({exc}): {actual_text[:500]!r}")
                continue
            shown = _parse_json(block.body)
            subset = "subset" in block.flags
            problems += [f"{where}: {p}" for p in compare(shown, actual, subset=subset)]
            if isinstance(actual, list) and not block.body.lstrip().startswith("["):  # one JSON value per line
                rewrites[block] = "\n".join(json.dumps(a, ensure_ascii=False) for a in _project(shown, actual, subset))
            else:
                projected = _project(shown, actual, subset)  # keeps the shown "…" placeholders
                one_line = "\n" not in block.body.strip()
                rewrites[block] = json.dumps(projected, ensure_ascii=False) if one_line else _dump(projected)
        else:
            shown_lines = [line.rstrip() for line in block.body.strip("\n").splitlines()]
            actual_lines = [line.rstrip() for line in actual_text.splitlines()]
            if shown_lines != actual_lines:
                problems.append(f"{where}: shown\n" + "\n".join(shown_lines) + "\nprinted\n" + "\n".join(actual_lines))
            rewrites[block] = "\n".join(actual_lines)
    return problems, rewrites


def _write(rewrites: dict[Block, str]) -> None:
    """Replace the bodies of the shown-output blocks, found again by their place among the file's
    blocks (the file may have been edited while the walkthroughs ran)."""
    by_file: dict[Path, dict[int, tuple[Block, str]]] = {}
    for block, text in rewrites.items():
        by_file.setdefault(block.path, {})[block.ordinal] = (block, text)
    for path, items in by_file.items():
        lines = path.read_text(encoding="utf-8").splitlines()
        now = parse(path)
        for ordinal, (block, text) in sorted(items.items(), reverse=True):
            current = now[ordinal] if ordinal < len(now) else None
            if current is None or (current.kind, current.name) != (block.kind, block.name):
                print(f"{_rel(path)}: the blocks moved while the walkthroughs ran; run --write again")
                break
            lines[current.start + 1 : current.end] = text.splitlines()
        else:
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the shown outputs from the commands' output")
    parser.add_argument("--only", action="append", default=[], help="FILE:NAME of a walkthrough (repeatable)")
    args = parser.parse_args()
    paths = doc_files()
    unmarked = [] if args.only else unmarked_blocks(paths)
    if unmarked:
        print("```bash blocks without a docs-run or docs-skip marker:", *unmarked, sep="\n  ")
        return 1
    failed = False
    rewrites: dict[Block, str] = {}
    for walk in walkthroughs(paths):
        if args.only and walk.key not in args.only:
            continue
        print(f"== {walk.key} ({len(walk.steps)} steps, {len(walk.outputs)} shown outputs)", flush=True)
        try:
            outputs = run_walkthrough(walk)
        except RuntimeError as exc:
            print(exc)
            failed = True
            continue
        problems, walk_rewrites = check_outputs(walk, outputs)
        rewrites.update(walk_rewrites)
        if problems:
            print(*problems, sep="\n")
            failed = failed or not args.write
    if args.write:  # all at once: a rewrite moves the lines of the blocks below it
        _write(rewrites)
        print(f"rewrote {len(rewrites)} shown outputs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
