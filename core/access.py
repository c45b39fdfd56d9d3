"""Who is asking, and what they may see.

Every tool takes a `Principal`. Scoping happens in the SQL the tools run (a join on
`branch_closure`), never in prompts, so no phrasing of a question can widen it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from core.errors import UnknownUser

ROLE_NAMES = {"rm": "客户经理", "designer": "产品经理", "risk": "风险管理", "admin": "管理员"}
# Roles that see the whole bank; an rm sees the subtree of their own branch.
BANK_WIDE_ROLES = frozenset({"designer", "risk", "admin"})
# Document access levels each role may retrieve.
DOC_ACCESS = {
    "rm": ("public", "internal"),
    "designer": ("public", "internal"),
    "risk": ("public", "internal", "restricted"),
    "admin": ("public", "internal", "restricted"),
}


@dataclass(frozen=True)
class Principal:
    user_id: str
    name: str
    role: str
    branch_code: str | None
    branch_name: str = ""

    @property
    def bank_wide(self) -> bool:
        return self.role in BANK_WIDE_ROLES or self.branch_code is None

    @property
    def scope_branch(self) -> str | None:
        """The root of the branch subtree this person may see, or None for the whole bank."""
        return None if self.bank_wide else self.branch_code

    @property
    def doc_access(self) -> tuple[str, ...]:
        return DOC_ACCESS.get(self.role, ("public",))

    @property
    def scope_label(self) -> str:
        return "全行" if self.bank_wide else f"{self.branch_name or self.branch_code}及下辖机构"

    def may(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, frozenset())


def branch_in_scope(column: str) -> str:
    """The SQL condition that keeps rows inside the asker's branch subtree; bind `%(scope)s` to
    `Principal.scope_branch` (NULL = the whole bank). `column` is a fixed name from code."""
    return (f"(%(scope)s::text IS NULL OR {column} IN"
            " (SELECT descendant FROM branch_closure WHERE ancestor = %(scope)s))")


PERMISSIONS: dict[str, frozenset[str]] = {
    "rm": frozenset({"ask"}),
    "designer": frozenset({"ask", "draft_plan"}),
    "risk": frozenset({"ask", "dispose_alert"}),
    "admin": frozenset({"ask", "draft_plan", "dispose_alert", "ingest", "import"}),
}

# The asker when the CLI is used without --as: the operator at the console.
LOCAL_ADMIN = Principal(user_id="local-admin", name="本地管理员", role="admin", branch_code=None)


def load_principal(conn: psycopg.Connection[Any], user_id: str | None) -> Principal:
    if user_id is None:
        return LOCAL_ADMIN
    row = conn.execute(
        "SELECT u.user_id, u.name, u.role, u.branch_code, coalesce(b.name, '') AS branch_name"
        " FROM users u LEFT JOIN branches b ON b.code = u.branch_code"
        " WHERE u.user_id = %(u)s OR u.wecom_userid = %(u)s"
        " ORDER BY (u.user_id = %(u)s) DESC LIMIT 1",
        {"u": user_id},
    ).fetchone()
    if row is None:
        raise UnknownUser(f"未知用户 {user_id!r}：请确认用户编号 (unknown user)")
    return Principal(
        user_id=row["user_id"], name=row["name"], role=row["role"],
        branch_code=row["branch_code"], branch_name=row["branch_name"],
    )
