"""Identity (CONTRACT.md, "Identity"): an admin token, and user tokens `<user_id>.<signature>`
signed with HMAC-SHA256 under a server secret, so any worker can check one without a session
store."""

from __future__ import annotations

import hashlib
import hmac
import re

USER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def user_token(secret: str, user_id: str) -> str:
    sig = hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return f"{user_id}.{sig}"


def user_from_token(secret: str, token: str) -> str | None:
    """The user id a token was minted for, or None when it is not a valid token."""
    user_id, dot, _ = token.rpartition(".")
    if not dot or not USER_ID.fullmatch(user_id):
        return None
    # compare bytes: comparing str with non-ASCII characters raises TypeError
    return user_id if hmac.compare_digest(user_token(secret, user_id).encode(),
                                          token.encode()) else None


def is_admin(admin_token: str, token: str) -> bool:
    return hmac.compare_digest(admin_token.encode(), token.encode())
