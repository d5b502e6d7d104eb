"""Every shell and Python example in README.md and docs/*.md, run; the output they show, compared.

The convention for writing examples is in tests/support/doc_examples.py and the README
("Examples in the docs are tests")."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support import ROOT as REPO_ROOT
from tests.support.doc_examples import (
    FULL_ENV,
    Example,
    check_shell_example,
    collect,
    fresh_copy,
    python_source,
    unmarked_commands,
)
from tests.support.stores import POSTGRES_URL, REDIS_URL, need_service

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
EXAMPLES = [example for page in PAGES for example in collect(page, REPO_ROOT)]
FULL = os.environ.get(FULL_ENV, "") not in {"", "0"}
SERVICES = {"postgres": ("PostgreSQL", POSTGRES_URL), "redis": ("Redis", REDIS_URL)}


def _param(example: Example) -> object:
    marks = [getattr(pytest.mark, need) for need in example.directives.needs]
    if example.directives.not_run:
        marks.append(pytest.mark.skip(reason=f"not run: {example.directives.not_run}"))
    return pytest.param(example, id=example.id, marks=marks)


@pytest.fixture(scope="module")
def python_pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """One copy of the repository and one namespace per page, shared by its Python blocks."""
    return {}


@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_doc_example(example: Example, tmp_path: Path, python_pages: dict,
                     tmp_path_factory: pytest.TempPathFactory,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    for need in example.directives.needs:
        need_service(*SERVICES[need])
    if example.lang == "python":
        if example.page not in python_pages:
            copy = fresh_copy(REPO_ROOT, tmp_path_factory.mktemp("page"))
            python_pages[example.page] = (copy, {"__name__": "__doc_example__"})
        copy, namespace = python_pages[example.page]
        monkeypatch.chdir(copy)
        monkeypatch.setenv("TQDM_DISABLE", "1")
        exec(compile(python_source(example, FULL), example.id, "exec"), namespace)
        return
    problems = check_shell_example(example, fresh_copy(REPO_ROOT, tmp_path), FULL)
    assert not problems, f"{example.id}:\n" + "\n\n".join(problems)


def test_every_command_block_is_run_or_says_why() -> None:
    """A block that shows a command to type is a console/sh block (so it runs) or not-run."""
    found = [hit for page in PAGES for hit in unmarked_commands(page, REPO_ROOT)]
    assert not found, ("blocks that look like commands but are not run (tag them ```console or "
                       "```sh, with <!-- not-run: REASON --> if they cannot run):\n"
                       + "\n".join(found))
