"""Passwords out of text that people or CI will read (logs, summaries, error lines)."""

from __future__ import annotations

import re

_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@\s:]*:)[^@\s/]*(?=@)", re.I)


def redact_url(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***` (user names stay)."""
    return _PASSWORD.sub(r"\g<head>***", text)
