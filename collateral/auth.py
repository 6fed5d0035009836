"""API keys: created once, shown once, stored hashed, compared in constant time.

A key reads ``agk_<key id>_<secret>``. The key id finds the row; the secret's SHA-256
is compared with ``hmac.compare_digest``. The secret is 32 random bytes, so a plain
SHA-256 is enough (no password stretching is needed for a value nobody chose).
"""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select

from collateral.tables import api_keys

ROLES = ("loan_officer", "risk_admin", "operator")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key id, its role and, for loan officers, their branch."""

    key_id: str
    role: str
    branch: str | None

    def sees_branch(self, branch: str) -> bool:
        return self.role != "loan_officer" or self.branch == branch


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(engine: Engine, role: str, branch: str | None, label: str | None = None) -> str:
    """Store a new key and return it; it cannot be shown again."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if role == "loan_officer" and not branch:
        raise ValueError("a loan_officer key needs --branch")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    with engine.begin() as conn:
        conn.execute(
            insert(api_keys).values(
                key_id=key_id,
                secret_sha256=_digest(secret),
                role=role,
                branch=branch,
                label=label,
                created_at=datetime.now(UTC),
            )
        )
    return f"agk_{key_id}_{secret}"


def authenticate(engine: Engine, key: str) -> Principal | None:
    """The principal for a presented key, or None (unknown, malformed or revoked)."""
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "agk" or not parts[1] or not parts[2]:
        return None
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.key_id == parts[1])).first()
    expected = row.secret_sha256 if row else _digest("no such key")
    matches = hmac.compare_digest(expected, _digest(parts[2]))
    if row is None or not matches or row.revoked_at is not None:
        return None
    return Principal(row.key_id, row.role, row.branch)


class KeyCache:
    """Recently verified keys, for ``ttl_s`` seconds, so a busy client costs one database
    lookup per key per few seconds rather than one per request. Keyed by the key's SHA-256,
    never the key itself; unknown keys are not cached (each wrong guess is a lookup)."""

    def __init__(self, ttl_s: float = 5.0, size: int = 10_000):
        self.ttl_s, self.size = ttl_s, size
        self._items: dict[str, tuple[float, Principal]] = {}

    def recent(self, key: str) -> Principal | None:
        """The principal if the key was verified less than ``ttl_s`` ago, else None."""
        hit = self._items.get(_digest(key))
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        return None

    def principal(self, engine: Engine, key: str) -> Principal | None:
        """``recent``, else the database's answer (remembered when it is a valid key)."""
        principal = self.recent(key)
        if principal is not None:
            return principal
        now = time.monotonic()
        principal = authenticate(engine, key)
        digest = _digest(key)
        if principal is not None:
            if len(self._items) >= self.size:
                self._items.clear()
            self._items[digest] = (now, principal)
        return principal
