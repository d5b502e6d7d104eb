"""Referral trees: who started each chain, how deep it went, how many invites it took."""

from __future__ import annotations


class ReferralTrees:
    """Buyers per tree (rooted at the first-time shopper who started it), successful invites
    per inviter (for the fission-master bonus), invites sent, buyers who could invite."""

    def __init__(self, depth_cap: int | None) -> None:
        self.depth_cap = depth_cap
        self.trees: dict[int, list[int]] = {}  # root -> [buyers, max depth]
        self.successes: dict[int, int] = {}
        self.invites_sent = 0
        self.organic_buyers = 0
        self.invited_buyers = 0
        self.inviting_buyers = 0
        """Buyers above the depth cap, who may send invites (K's "per buyer")."""

    def sent(self, invites: int) -> None:
        self.invites_sent += invites

    def bought(self, pid: int, depth: int, root: int, inviter: int) -> int:
        """Count a kept order; for an invitee, returns its inviter's successful invites so far
        (this one included), else 0."""
        if self.depth_cap is None or depth < self.depth_cap:
            self.inviting_buyers += 1
        if depth == 0:
            self.organic_buyers += 1
            self.trees.setdefault(pid, [0, 0])[0] += 1
            return 0
        self.invited_buyers += 1
        tree = self.trees.setdefault(root, [0, 0])
        tree[0] += 1
        tree[1] = max(tree[1], depth)
        n = self.successes[inviter] = self.successes.get(inviter, 0) + 1
        return n

    def sizes_and_depths(self) -> list[tuple[int, int]]:
        return [(s, d) for s, d in self.trees.values()]
