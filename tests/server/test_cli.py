"""`groupbuy serve` refuses bad input in one line with exit code 2, before starting uvicorn."""

from __future__ import annotations

import pytest

from groupbuy.cli import main
from tests.support import SCENARIOS
from tests.support.servers import refused_port

SCENARIO = str(SCENARIOS / "default.toml")


@pytest.mark.parametrize(("argv", "says"), [
    (["serve", SCENARIO.replace("default", "missing")], "file not found"),
    (["serve", SCENARIO, "--store", "mysql://x"], "unknown store"),
    (["serve", SCENARIO, "--store", "sqlite:///"], "sqlite:///relative/path"),
    (["serve", SCENARIO, "--store", "redis://127.0.0.1:6379/0?prefix=bad prefix"], "prefix"),
    (["serve", SCENARIO, "--store", "postgresql://x@127.0.0.1/db?schema=Bad-Name"], "schema"),
    (["serve", SCENARIO, "--workers", "0"], "--workers"),
])
def test_usage_errors(argv: list[str], says: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_unreachable_backend_is_one_line(capsys) -> None:
    with refused_port() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/test"
        # --port 0: the port is claimed before the store is opened; never the shared 8000
        assert main(["serve", SCENARIO, "--store", url, "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("groupbuy serve: --store: cannot open") and len(err.splitlines()) == 1


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://app:s3cr3t@db:5432/x?schema=a", "postgresql://app:***@db:5432/x?schema=a"),
    ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
    ("cannot open postgresql://u:p%40ss@h/x: failed", "cannot open postgresql://u:***@h/x: failed"),
    ("postgresql://app@db/x", "postgresql://app@db/x"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
])
def test_store_url_passwords_are_redacted(url: str, shown: str) -> None:
    from reference_server.stores import redact_url
    assert redact_url(url) == shown
