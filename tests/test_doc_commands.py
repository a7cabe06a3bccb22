"""The commands the README and docs/*.md show work as written.

Fast: every `lightrnn ...` command of a shell block (```bash or ```console) in README.md and
docs/*.md parses with the real argument parser, so a renamed, removed or newly required option
breaks this test rather than a reader's first hour.

Slow: the `Using a trained model` recipe of docs/using.md runs as written in a scratch folder: its
bash block, then every `$ ` command of its console blocks with the output compared line by line
(`$ cat FILE` of a file the recipe lacks writes FILE from the shown output: that is the reader's
input), then its Python block and the README's `Using a trained model` blocks against that model
(linked where the README expects the smoke run's). `.venv/bin/...` resolves to this interpreter's
environment and the checkout's code wins (PYTHONPATH).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lightrnn.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.M | re.S)
SEPARATORS = {"&&", "||", "|", ";", ">", ">>", "2>", "<"}


def blocks(page: Path, languages: tuple[str, ...]) -> list[str]:
    return [body for language, body in FENCE.findall(page.read_text(encoding="utf-8")) if language in languages]


def shell_lines(block: str, console: bool) -> list[str]:
    """The command lines of a block: continuation lines joined; in a console block only `$ ` lines."""
    joined = block.replace("\\\n", " ")
    if console:
        return [line[2:] for line in joined.splitlines() if line.startswith("$ ")]
    return [line for line in joined.splitlines() if line.strip()]


def lightrnn_commands(line: str) -> list[list[str]]:
    """The arguments of each `lightrnn` invocation of a shell line (pipes, `&&` and redirections split it)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, current = [], []
    for token in list(lexer) + [";"]:
        if token in SEPARATORS or set(token) <= set("&|;<>"):
            starts = [i + 1 for i, word in enumerate(current) if word.endswith("/lightrnn") and i == 0
                      or word == "lightrnn" and (i == 0 or current[i - 1] == "-m")]
            if starts:  # `lightrnn ...`, `.venv/bin/lightrnn ...`, `python -m lightrnn ...`, `torchrun ... -m lightrnn ...`
                commands.append(current[starts[0]:])
            current = [] if token not in (">", ">>", "2>", "<") else ["redirect"]
        elif current != ["redirect"]:
            current.append(token)
        else:
            current = ["redirect-target"]
    return commands


def documented_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for console, languages in ((False, ("bash", "sh")), (True, ("console",))):
            for block in blocks(page, languages):
                for line in shell_lines(block, console):
                    found += [(page.relative_to(REPO).as_posix(), argv) for argv in lightrnn_commands(line)]
    return found


def test_the_docs_show_lightrnn_commands() -> None:
    pages = {page for page, _ in documented_commands()}
    assert {"README.md", "docs/data.md", "docs/training.md", "docs/using.md"} <= pages


@pytest.mark.parametrize(("page", "argv"), documented_commands(), ids=lambda value: " ".join(value)
                         if isinstance(value, list) else value)
def test_every_documented_lightrnn_command_parses(page: str, argv: list[str]) -> None:
    parser = build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as stop:  # argparse exits 0 for --help, 2 with a message on stderr otherwise
        assert stop.code == 0, f"{page}: `lightrnn {' '.join(argv)}` does not parse"


def section(page: Path, heading: str) -> str:
    """The text of `page` from `heading` (a whole line) to the next heading of the same level."""
    text = page.read_text(encoding="utf-8")
    level = heading.split(" ")[0]
    body = text.split(f"\n{heading}\n", 1)[1]
    return body.split(f"\n{level} ", 1)[0]


def console_steps(block: str) -> list[tuple[str, list[str]]]:
    """(command, the output lines shown under it) for each `$ ` line of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def _shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-o", "pipefail", "-ec", command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_the_using_recipe_and_the_readme_blocks_run_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    page = REPO / "docs" / "using.md"
    recipe = blocks(page, ("bash",))[0]
    done = _shell(recipe, tmp_path, env)
    assert done.returncode == 0, f"docs/using.md's recipe failed:\n{done.stderr[-3000:]}"
    for block in blocks(page, ("console",)):
        for command, shown in console_steps(block):
            target = tmp_path / command[4:].strip()
            if command.startswith("cat ") and not target.exists():
                target.write_text("\n".join(shown) + "\n", encoding="utf-8")  # the reader's own input
                continue
            done = _shell(command, tmp_path, env)
            assert done.returncode == 0, f"docs/using.md: `{command}` failed: {done.stderr[-2000:]}"
            assert done.stdout.splitlines() + done.stderr.splitlines() == shown, f"docs/using.md: `{command}`"
    for code in blocks(page, ("python",)):
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"docs/using.md's Python block failed: {done.stderr[-2000:]}"
    # The README's `Using a trained model` blocks, against this model where they expect the smoke run's.
    smoke_model = tmp_path / "results" / "smoke" / "ptb" / "lightrnn" / "best.pt"
    smoke_model.parent.mkdir(parents=True)
    smoke_model.symlink_to(tmp_path / "run" / "best.pt")
    readme = section(REPO / "README.md", "## Using a trained model")
    for language, code in FENCE.findall(readme):
        command = [sys.executable, "-c", code] if language == "python" else ["bash", "-ec", code]
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"README.md, Using a trained model, {language} block: {done.stderr[-2000:]}"
        assert language == "python" or done.stdout.strip(), f"README.md, {language} block printed no score"
