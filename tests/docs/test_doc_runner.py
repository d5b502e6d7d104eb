"""The doc-example runner itself: what it collects, how it compares, that it can fail."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.doc_examples import (
    DocTestError,
    Example,
    check_shell_example,
    collect,
    console_commands,
    output_mismatch,
    parse_directives,
    unmarked_commands,
)

PAGE = '''# A page

```console
$ echo one
one
```

<!-- doc-test: replace "20" "2"; exit=3; timeout=5; needs=redis; numbers=ignore -->
<!-- doc-test: setup "touch x" -->
```sh
exit 3  # 20
```

<!-- not-run: needs a browser -->
```bash
open http://example.com
```

```text
just text
```

```python
a = 1
```

<!-- doc-test: output -->
```text
printed
```

<!-- doc-test: exit=2 -->

A paragraph in between: the comment above no longer steers the block below.

```console
$ true
```
'''


def _page(tmp_path: Path, text: str) -> Path:
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    return page


def _example(source: str, lang: str = "console", **directives: object) -> Example:
    return Example("page.md", 1, lang, source, parse_directives(
        [("doc-test", "; ".join(_directive(k, v) for k, v in directives.items()))], "page.md:1"))


def _directive(key: str, value: object) -> str:
    if key == "replace":
        old, new = value  # type: ignore[misc]
        return f'replace "{old}" "{new}"'
    return f"{key}={value}"


def test_collect_reads_blocks_and_the_comments_right_before_them(tmp_path: Path) -> None:
    examples = collect(_page(tmp_path, PAGE), tmp_path)
    assert [(e.lang, e.line) for e in examples] == [
        ("console", 3), ("shell", 10), ("shell", 15), ("python", 23), ("console", 36)]
    shell = examples[1].directives
    assert shell.replace == (("20", "2"),)
    assert (shell.exit_code, shell.timeout, shell.needs) == (3, 5.0, ("redis",))
    assert shell.numbers_ignored and shell.setup == ("touch x",)
    assert examples[2].directives.not_run == "needs a browser"
    assert examples[3].expected_output == "printed\n"
    assert examples[4].directives.exit_code == 0, "a comment before a paragraph steers nothing"
    assert examples[0].id == "page.md:3"


@pytest.mark.parametrize("text, message", [
    ("<!-- doc-test: repalce \"a\" \"b\" -->\n```sh\ntrue\n```\n", "unknown doc-test directive"),
    ("<!-- doc-test: exit=2 -->\n```text\nx\n```\n", "never run"),
    ("<!-- not-run: -->\n```sh\ntrue\n```\n", "needs a reason"),
    ("<!-- doc-test: output -->\n```text\nx\n```\n", "after a runnable block"),
])
def test_a_comment_the_runner_cannot_use_is_an_error(tmp_path: Path, text: str,
                                                       message: str) -> None:
    with pytest.raises(DocTestError, match=message):
        collect(_page(tmp_path, text), tmp_path)


def test_console_blocks_split_into_commands_with_continuations() -> None:
    commands = console_commands("$ a \\\n    --b\nout 1\nout 2\n\n$ c\n")
    assert [(c.text, c.expected) for c in commands] == [("a \\\n    --b", "out 1\nout 2"),
                                                        ("c", "")]
    with pytest.raises(DocTestError):
        console_commands("output first\n$ a\n")


def test_command_blocks_that_are_not_run_are_found(tmp_path: Path) -> None:
    page = _page(tmp_path, "```\n$ groupbuy simulate x.toml\n```\n\n"
                           "```\ngroupbuy sweep scenarios/a.toml --vary k=1\n```\n\n"
                           "```\ngroupbuy sweep SCENARIO --vary KEY=V1 [--seed S]\n```\n\n"
                           "```console\n$ groupbuy simulate x.toml\n```\n")
    assert [hit.split(":")[1] for hit in unmarked_commands(page, tmp_path)] == ["1", "5"]


def test_output_compares_exactly_but_for_spacing_durations_and_wildcards() -> None:
    assert output_mismatch("KPI   12,163  [1, 2]\n", "KPI 12,163 [1, 2]   \n", False) is None
    assert output_mismatch("took 0.4 s, 38 ms\n", "took 12.5 s, 7 ms\n", False) is None
    assert output_mismatch("a\n...\nz\n", "a\nb\nc\nz\n", False) is None
    assert output_mismatch("a\n...\nz\n", "a\nz\n", False) is None
    assert output_mismatch("path …/results/x-…\n", "path /tmp/q/results/x-2026\n", False) is None
    assert output_mismatch("bar\nok\n", "\rbar 10%|█ |\rbar 100%|██|\nbar\nok\n", False) is None
    diff = output_mismatch("buyers 494.3\n", "buyers 494.4\n", False)
    assert diff is not None and "-buyers 494.3" in diff and "+buyers 494.4" in diff
    assert output_mismatch("a\n...\nz\n", "a\nb\n", False) is not None
    assert output_mismatch("a\n", "a\nextra\n", False) is not None


def test_masked_numbers_keep_the_text_and_the_shape() -> None:
    assert output_mismatch("trial 13: x=1,234.5 [-2, 3]\ntrial 59: x=7 [1, 2]\n---------\n",
                           "trial 2: x=-8 [4, 5]\n---\n", True) is None
    assert output_mismatch("trial 13: x=1\n", "trial 13: y=1\n", True) is not None
    assert output_mismatch("[1, 2]\n", "[1 2]\n", True) is not None


def test_a_matching_example_passes_and_a_drifted_one_fails(tmp_path: Path) -> None:
    ok = _example("$ echo hello\nhello\n$ echo a; echo b >&2\na\nb\n")
    assert check_shell_example(ok, tmp_path, full=False) == []
    drifted = _example("$ echo hello\nhullo\n")
    problems = check_shell_example(drifted, tmp_path, full=False)
    assert len(problems) == 1 and "output differs" in problems[0] and "+hello" in problems[0]


def test_exit_codes_are_checked(tmp_path: Path) -> None:
    assert check_shell_example(_example("$ exit 2\n", exit=2), tmp_path, full=False) == []
    problems = check_shell_example(_example("$ exit 1\n"), tmp_path, full=False)
    assert "exited 1, expected 0" in problems[0]
    failing_script = _example("false\necho never\n", lang="shell")
    assert "exited 1" in check_shell_example(failing_script, tmp_path, full=False)[0]


def test_fast_variants_replace_and_full_runs_do_not(tmp_path: Path) -> None:
    fast = _example("$ echo 20 runs\nwhatever 20 runs\n", replace=("echo 20", "echo 2"))
    # the fast run prints "2 runs": numbers masked, so it still shows what the doc shows
    assert check_shell_example(_example("$ echo 2 runs\n2 runs\n"), tmp_path, False) == []
    problems = check_shell_example(fast, tmp_path, full=False)
    assert "whatever" in problems[0], "masked numbers still compare the words"
    full = _example("$ echo 20 runs\n20 runs\n", replace=("echo 20", "echo 2"))
    assert check_shell_example(full, tmp_path, full=True) == []
    assert check_shell_example(full, tmp_path, full=False) == []
    stale = _example("$ echo 1\n1\n", replace=("--replications 20", "--replications 2"))
    with pytest.raises(DocTestError, match="stale fast variant"):
        check_shell_example(stale, tmp_path, full=False)


def test_setup_runs_first_and_unseen(tmp_path: Path) -> None:
    example = Example("page.md", 1, "console", "$ cat made.txt\nmade\n",
                      parse_directives([("doc-test", 'setup "echo made > made.txt"')], "p"))
    assert check_shell_example(example, tmp_path, full=False) == []


def test_a_command_that_runs_too_long_is_killed_with_its_children(tmp_path: Path) -> None:
    example = _example("$ sleep 30 & sleep 30\n", timeout=1)
    started = time.monotonic()
    problems = check_shell_example(example, tmp_path, full=False)
    assert "did not finish in 1 s" in problems[0]
    assert time.monotonic() - started < 10
