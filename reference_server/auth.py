"""Identity (CONTRACT.md, "Identity"): an admin token, and user tokens
`<user_id>.<expires>.<signature>` signed with HMAC-SHA256 under a server secret, so any worker
can check one without a session store. Secrets never go on a command line or into a log: the
admin token comes from `GROUPBUY_ADMIN_TOKEN` or a file, the signing secret lives in the store
(PostgreSQL, Redis) or in a private state folder (SQLite), never under `results/`."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import time
from functools import lru_cache
from pathlib import Path

USER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TOKEN_TTL_SECONDS = 7 * 86400.0
"""How long a user token is valid by default (`GROUPBUY_TOKEN_TTL`): a week, far longer than any
load test, short enough that a leaked token stops working."""


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def user_token(secret: str, user_id: str, expires: float) -> str:
    """A token for `user_id`, valid until `expires` (Unix seconds, whole)."""
    payload = f"{user_id}.{int(expires)}"
    return f"{payload}.{_sign(secret, payload)}"


def user_from_token(secret: str, token: str, now: float | None = None) -> str | None:
    """The user id a token was minted for, or None when it is not a valid, unexpired token."""
    signed = _signed(secret, token)
    if signed is None:
        return None
    user_id, expires = signed
    return user_id if expires > (time.time() if now is None else now) else None


@lru_cache(maxsize=16384)
def _signed(secret: str, token: str) -> tuple[str, int] | None:
    """(user id, expiry) of a token signed under `secret`, else None. Cached: a buyer sends the
    same token with every request, and the signature check showed in the profile."""
    payload, dot, _ = token.rpartition(".")
    user_id, dot2, expires = payload.rpartition(".")
    if not dot or not dot2 or not USER_ID.fullmatch(user_id) or not expires.isascii() \
            or not expires.isdigit() or len(expires) > 12:
        return None
    # compare bytes: comparing str with non-ASCII characters raises TypeError
    good = f"{payload}.{_sign(secret, payload)}"
    if not hmac.compare_digest(good.encode(), token.encode()):
        return None
    return user_id, int(expires)


def is_admin(admin_token: str, token: str) -> bool:
    return hmac.compare_digest(admin_token.encode(), token.encode())


def token_ttl() -> float:
    """The user-token lifetime in seconds (`GROUPBUY_TOKEN_TTL`, default a week)."""
    raw = os.environ.get("GROUPBUY_TOKEN_TTL")
    return float(raw) if raw else TOKEN_TTL_SECONDS


def state_dir() -> Path:
    """Where the server keeps secrets on this machine: `GROUPBUY_STATE_DIR`, else
    `$XDG_STATE_HOME/groupbuy` (default `~/.local/state/groupbuy`). Never under `results/`,
    which CI uploads."""
    if os.environ.get("GROUPBUY_STATE_DIR"):
        return Path(os.environ["GROUPBUY_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "groupbuy"


def private_file(path: Path, proposed: str) -> str:
    """The text in `path`, or `proposed` written there first (mode 0600, atomically, so two
    processes starting at once agree on one value)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # the writer that won may not have written yet
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.01)
        raise RuntimeError(f"{path} is empty; delete it to make a new one") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(proposed + "\n")
    return proposed
