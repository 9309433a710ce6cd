"""The commands the README and docs/ show, checked against the product.

- Every `contact-exporter …` line of a bash block names commands and options that exist (a renamed
  option or command fails here, not in front of a user).
- Every copy-paste line that runs on the demo's home (`.venv/bin/contact-exporter --home data/demo …`)
  is run exactly as written, in a folder where `make demo` ran (`data/demo`, `.venv`), and succeeds.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from flows.cli import app
from tests.worlds import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DEMO_PREFIX = ".venv/bin/contact-exporter --home data/demo "


def bash_lines(kinds: str = "bash") -> Iterator[tuple[str, str]]:
    """(page, command line) for every line of every bash block (`kinds` "bash|text": and of the
    usage synopses in text blocks), continuation lines joined."""
    for page in PAGES:
        for block in re.findall(rf"```(?:{kinds})\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    yield page.name, line


def without_comment(line: str) -> str:
    """The command without a trailing `# comment` (a `#` inside quotes is kept)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return " ".join(shlex.quote(t) for t in lexer)


def cli_lines() -> list[tuple[str, str]]:
    """Every `contact-exporter` line of a bash block or a usage synopsis."""
    found = []
    for page, line in bash_lines("bash|text"):
        words = line.split()
        if words and words[0] in ("contact-exporter", ".venv/bin/contact-exporter"):
            found.append((page, line))
    return found


def _command(words: list[str]) -> tuple[Any, list[str], list[str]]:
    """The click command the words name, its path, and the words left after it."""
    command: Any = typer.main.get_command(app)  # typer carries its own click
    path: list[str] = []
    rest = list(words)
    while rest and hasattr(command, "commands"):
        word = rest[0]
        if word.startswith("-"):  # a global option and its value
            rest = rest[2:] if word == "--home" else rest[1:]
            continue
        sub = command.commands.get(word)
        if sub is None:
            break
        command, path, rest = sub, [*path, word], rest[1:]
    return command, path, rest


def options_of(command: Any) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def synopsis_problems(line: str) -> list[str]:
    """What in a documented line the CLI does not have: unknown commands, unknown options."""
    text = re.sub(r"#.*$", "", line.replace(".venv/bin/", "")).strip()
    first, *alternatives = [part.strip() for part in text.split(" | ")]
    words = first.split()[1:]
    command, path, rest = _command(words)
    if not path:
        return [f"no command in {line!r}"]
    problems = _unknown_options(command, path, rest)
    group_path = path[:-1]
    for alternative in alternatives:  # `deployments list | generate [--check] | serve`
        alt_command, alt_path, alt_rest = _command([*group_path, *alternative.split()])
        if alt_path[:-1] != group_path or len(alt_path) != len(path):
            problems.append(f"{' '.join([*group_path, alternative.split()[0]])}: no such command")
        else:
            problems += _unknown_options(alt_command, alt_path, alt_rest)
    return problems


def _unknown_options(command: Any, path: list[str], rest: list[str]) -> list[str]:
    known = options_of(command) | options_of(typer.main.get_command(app))
    used = {m.group(0) for word in rest for m in [re.match(r"-{1,2}[a-z][a-z0-9-]*", word.strip("[]"))] if m}
    return [f"{' '.join(path)}: no option {opt}" for opt in sorted(used - known)]


def test_the_docs_show_commands() -> None:
    lines = cli_lines()
    assert len(lines) > 30, "the pages lost their examples?"
    assert any(line.startswith(DEMO_PREFIX) for _, line in lines)


@pytest.mark.parametrize(
    ("page", "line"), cli_lines(), ids=[f"{p}:{i}" for i, (p, _) in enumerate(cli_lines())]
)
def test_every_documented_command_and_option_exists(page: str, line: str) -> None:
    assert synopsis_problems(line) == [], f"{page}: {line}"


@pytest.fixture(scope="module")
def after_make_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder as a newcomer's checkout is after `make demo`: `.venv` and the demo's home."""
    folder = tmp_path_factory.mktemp("checkout")
    (folder / ".venv").symlink_to(REPO / ".venv")
    shutil.copytree(REPO / "configs", folder / "configs")  # the checkout's sample configs
    out = subprocess.run(
        [".venv/bin/contact-exporter", "demo", "--borrowers", "3000"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    yield folder
    subprocess.run(  # a `server start` line that ran, then a failure before its `server stop`
        [".venv/bin/contact-exporter", "--home", "data/demo", "server", "stop"],
        cwd=folder,
        capture_output=True,
        env=_env(),
        timeout=120,
        check=False,
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "CONTACT_EXPORTER_"))}
    env.pop("PREFECT_HOME", None)  # each home keeps its own, as from a fresh shell
    return env


DEMO_LINES = list(
    dict.fromkeys(line for _, line in cli_lines() if line.startswith(DEMO_PREFIX))
)  # page order

# Every other command line of a bash block, and why it is not run here as written. A new command
# in the docs fails `test_every_documented_line_is_run_or_accounted_for` until it is one or the other.
NOT_RUN = {
    "make demo": "the demo itself: tests/flows/test_demo.py runs it; this module runs `contact-exporter demo`",
    "make test": "the test suite itself (CI runs it)",
    ".venv/bin/contact-exporter deployments generate": "writes prefect.yaml of the working folder: tests/flows/test_prefect_yaml.py",
    ".venv/bin/contact-exporter server start": "tests/flows/test_local_server.py; the demo-home form below runs here",
    "export PREFECT_API_URL=": "needs a running server; tests/flows/test_deployment_runs.py sets it the same way",
    ".venv/bin/prefect work-pool create": "tests/flows/test_prefect_yaml.py (prefect deploy --all on a work pool)",
    ".venv/bin/prefect --no-prompt deploy --all": "tests/flows/test_prefect_yaml.py",
    ".venv/bin/prefect worker start": "runs until stopped: a worker process",
    ".venv/bin/contact-exporter deployments list": "the demo-home form runs here (docs/cli.md)",
    ".venv/bin/contact-exporter deployments serve": "runs until stopped: tests/flows/test_deployment_runs.py",
    ".venv/bin/prefect deployment run": "tests/flows/test_deployment_runs.py runs it against a served deployment",
    ".venv/bin/contact-exporter backfill CE-VOICECOL --start 2026-11-01 --end 2026-11-07": "the demo-home form runs here (docs/cli.md)",
    "export CONTACT_EXPORTER_API_KEY=": "the HTTP API session: tests/flows/test_api.py serves it with uvicorn",
    "contact-exporter serve --port 8000": "runs until stopped: tests/flows/test_api.py",
    "curl -s": "against `serve`: tests/flows/test_api.py makes the same requests",
    "python3 -m pip install uv==": "a worker host's install (the Makefile's bootstrap)",
    "dask scheduler": "another host: tests/flows/test_partitioned_flows.py runs a distributed.LocalCluster",
    "dask worker": "another host: as above",
    "contact-exporter --home /shared/home run": "a shared home on a cluster: as above",
    "contact-exporter run CE-VOICECOL --source": "a lender's own book: tests/pipelines/test_remote_sources.py runs every kind",
    "AWS_ENDPOINT_URL=": "an S3-compatible store: tests/pipelines/test_remote_sources.py (moto in server mode)",
    "PGPASSWORD=": "a PostgreSQL server: tests/pipelines/test_remote_sources.py (initdb in a temp dir)",
    "contact-exporter generate --borrowers 100000 --out": "as above: generate writes every kind there",
}


def test_every_documented_line_is_run_or_accounted_for() -> None:
    lines = [line for _, line in bash_lines() if not line.startswith(DEMO_PREFIX)]
    unaccounted = [line for line in lines if not any(line.startswith(key) for key in NOT_RUN)]
    assert unaccounted == [], "run these on the demo home (--home data/demo) or say why not in NOT_RUN"
    stale = [key for key in NOT_RUN if not any(line.startswith(key) for line in lines)]
    assert stale == [], "NOT_RUN names commands the docs no longer show"


@pytest.mark.integration
@pytest.mark.parametrize("line", DEMO_LINES)
def test_a_documented_demo_command_runs_as_written(after_make_demo: Path, line: str) -> None:
    out = subprocess.run(
        ["bash", "-c", without_comment(line)],
        cwd=after_make_demo,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, f"{line}\n{out.stderr[-3000:]}"


def test_a_stale_option_is_caught() -> None:
    """The check itself: an option or command that does not exist is named."""
    assert synopsis_problems("contact-exporter run CE-X --as-off 2026-11-03") == ["run: no option --as-off"]
    assert synopsis_problems("contact-exporter server start | status | restart") == [
        "server restart: no such command"
    ]
    assert (
        synopsis_problems("contact-exporter backfill CE-X --start 2026-11-01 --end 2026-11-02 --dask X") == []
    )
