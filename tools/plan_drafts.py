"""Element-plan drafts: a designed set of plans saved as a draft product in the 创设 (designing)
lifecycle status, with the requirement, evidence, pricing and simulation it was designed from.

Who may do what:
- create (save) a draft: roles that may `draft_plan` (designer, admin); anyone else gets a clear
  Chinese refusal (`DraftForbidden`);
- read, list, compare and export drafts: the same roles, every draft of the bank (a design team
  works on each other's drafts); other roles (rm, risk) see none — drafts are unreleased product
  designs with pricing, not something a relationship manager hands to customers.

Storage (table `plan_drafts`, migration V8): `requirement`, `plans` and `simulation` hold the
design's dicts as designed; the `evidence` column holds {"evidence", "pricing", "warnings",
"seconds"} — the evidence together with the pricing worked out from it, since V8 has no column of
its own for them. `get_draft` unwraps it, so a draft reads back in the shape `design_plans`
returned, plus its own code, name, status and author.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core.access import ROLE_NAMES, Principal
from core.errors import PuyiError
from core.text import fmt_money
from tools.catalog import CATEGORY_NAMES, ELEMENT_NAMES, SEGMENT_NAMES, STATUS_NAMES
from tools.plan_types import ELEMENT_KEYS

# Serialises draft numbering: two designers saving at the same moment get consecutive codes.
_CODE_LOCK = 0x50_4C_41_4E  # "PLAN"
_MAX_COMPARE = 6


class DraftForbidden(PuyiError):
    """The asker's role may not create or read element-plan drafts."""


class DraftNotFound(PuyiError):
    """No draft with that code."""


def _forbid(principal: Principal, what: str) -> None:
    if not principal.may("draft_plan"):
        role = ROLE_NAMES.get(principal.role, principal.role)
        raise DraftForbidden(
            f"抱歉，您的角色（{role}）不能{what}：要素方案草案仅限产品经理和管理员使用。"
            "如需新产品方案，请联系总行产品管理部门的产品经理 (forbidden: draft_plan)"
        )


def draft_name(requirement: dict[str, Any]) -> str:
    """A readable name for the draft from what the designer asked: the product type when the
    requirement names one (e.g. 小微经营贷), else purpose and category, then （草案）."""
    base = (requirement.get("product_type") or "").strip()
    if not base:
        purpose = (requirement.get("purpose") or "").strip()
        category = CATEGORY_NAMES.get(requirement.get("category") or "", "")
        base = f"{purpose}{category}" if purpose or category else "新产品"
        if category == "贷款" and purpose and not purpose.endswith("贷"):
            base = f"{purpose}贷"
    return f"{base}（草案）"


def _next_code(conn: psycopg.Connection[Any], day: str) -> str:
    prefix = f"DRAFT-{day}-"
    row = conn.execute(
        "SELECT coalesce(max(substr(code, %(n)s)::int), 0) AS last FROM plan_drafts"
        " WHERE code LIKE %(like)s AND substr(code, %(n)s) ~ '^[0-9]+$'",
        {"n": len(prefix) + 1, "like": prefix + "%"},
    ).fetchone()
    last = int(row["last"]) if row else 0
    return f"{prefix}{last + 1:03d}"


def save_draft(conn: psycopg.Connection[Any], principal: Principal, text: str, design: dict[str, Any],
               seed: int | None) -> dict[str, Any]:
    """Save a design (as returned by `tools.plans.design_plans`) as a draft product in the 创设
    status; returns the draft's summary (code, name, status…). Only designers and admins."""
    _forbid(principal, "创建要素方案草案")
    requirement = design.get("requirement") or {}
    name = draft_name(requirement)
    stored_evidence = {
        "evidence": design.get("evidence") or {}, "pricing": design.get("pricing") or {},
        "warnings": list(design.get("warnings") or []), "seconds": design.get("seconds"),
    }
    day = datetime.now().strftime("%Y%m%d")
    with conn.transaction():
        # Held to the end of the transaction: the next saver reads the max after this insert commits.
        conn.execute("SELECT pg_advisory_xact_lock(%(k)s)", {"k": _CODE_LOCK})
        code = _next_code(conn, day)
        row = conn.execute(
            "INSERT INTO plan_drafts (code, name, status, category, segment, request, requirement, evidence,"
            " plans, simulation, seed, created_by)"
            " VALUES (%(code)s, %(name)s, 'designing', %(category)s, %(segment)s, %(request)s, %(requirement)s,"
            " %(evidence)s, %(plans)s, %(simulation)s, %(seed)s, %(by)s)"
            " RETURNING id, created_at",
            {
                "code": code, "name": name, "category": requirement.get("category"),
                "segment": requirement.get("segment"), "request": text, "requirement": Jsonb(requirement),
                "evidence": Jsonb(stored_evidence), "plans": Jsonb(list(design.get("plans") or [])),
                "simulation": Jsonb(design["simulation"]) if design.get("simulation") is not None else None,
                "seed": seed, "by": principal.user_id,
            },
        ).fetchone()
    assert row is not None
    return {
        "code": code, "name": name, "status": "designing", "status_name": STATUS_NAMES["designing"],
        "category": requirement.get("category"), "segment": requirement.get("segment"),
        "plans": [p.get("name") for p in design.get("plans") or []], "seed": seed,
        "created_by": principal.user_id, "created_by_name": principal.name,
        "created_at": row["created_at"].isoformat(timespec="seconds"),
    }


_COLUMNS = (
    "d.code, d.name, d.status, d.category, d.segment, d.request, d.seed, d.created_by,"
    " coalesce(u.name, d.created_by) AS created_by_name, d.created_at, d.updated_at"
)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": row["code"], "name": row["name"], "status": row["status"],
        "status_name": STATUS_NAMES.get(row["status"], "已归档" if row["status"] == "archived" else row["status"]),
        "category": row["category"], "category_name": CATEGORY_NAMES.get(row["category"] or "", "—"),
        "segment": row["segment"], "segment_name": SEGMENT_NAMES.get(row["segment"] or "", "—"),
        "request": row["request"], "seed": row["seed"],
        "created_by": row["created_by"], "created_by_name": row["created_by_name"],
        "created_at": row["created_at"].isoformat(timespec="seconds"),
        "updated_at": row["updated_at"].isoformat(timespec="seconds"),
    }


def list_drafts(conn: psycopg.Connection[Any], principal: Principal, limit: int = 50) -> dict[str, Any]:
    """The bank's element-plan drafts, newest first (designers and admins)."""
    _forbid(principal, "查看要素方案草案")
    total = conn.execute("SELECT count(*) AS n FROM plan_drafts").fetchone()
    rows = conn.execute(
        f"SELECT {_COLUMNS}, jsonb_array_length(d.plans) AS n_plans,"
        " (SELECT coalesce(string_agg(p->>'name', '/' ORDER BY o), '') FROM jsonb_array_elements(d.plans)"
        "  WITH ORDINALITY AS x(p, o)) AS plan_names"
        " FROM plan_drafts d LEFT JOIN users u ON u.user_id = d.created_by"
        " ORDER BY d.created_at DESC, d.id DESC LIMIT %(limit)s",
        {"limit": max(1, min(int(limit), 500))},
    ).fetchall()
    items = []
    for r in rows:
        item = _summary(r)
        item["plan_count"] = int(r["n_plans"])
        item["plan_names"] = [n for n in r["plan_names"].split("/") if n]
        items.append(item)
    return {"total": int(total["n"]) if total else 0, "drafts": items}


def get_draft(conn: psycopg.Connection[Any], principal: Principal, code: str) -> dict[str, Any]:
    """One draft in full: the design as it was made (requirement, evidence, pricing, plans,
    simulation, warnings) and the draft's code, name, status and author."""
    _forbid(principal, "查看要素方案草案")
    wanted = (code or "").strip().upper()
    row = conn.execute(
        f"SELECT {_COLUMNS}, d.requirement, d.evidence, d.plans, d.simulation"
        " FROM plan_drafts d LEFT JOIN users u ON u.user_id = d.created_by WHERE upper(d.code) = %(c)s",
        {"c": wanted},
    ).fetchone()
    if row is None:
        raise DraftNotFound(f"没有编号为 {code} 的要素方案草案（可用 puyi plan list 查看草案）(no such draft)")
    draft = _summary(row)
    stored = row["evidence"] or {}
    draft.update({
        "requirement": row["requirement"] or {}, "evidence": stored.get("evidence") or {},
        "pricing": stored.get("pricing") or {}, "warnings": stored.get("warnings") or [],
        "seconds": stored.get("seconds"), "plans": row["plans"] or [], "simulation": row["simulation"],
    })
    return draft


def element_display(e: dict[str, Any]) -> str:
    """An element's value with its unit (3.45%, 36月); yuan amounts the way bankers read them
    (300.00 万元) — the same number, only written differently."""
    value, unit = str(e.get("value") if e.get("value") is not None else ""), e.get("unit") or ""
    if not value:
        return "—"
    if unit == "元":
        try:
            return fmt_money(float(value))
        except ValueError:
            pass
    return f"{value}{unit}" if unit and unit not in value else value


def plan_element_rows(plans: list[dict[str, Any]]) -> list[list[str]]:
    """One row per element (well-known keys in contract order, then any other key), one column per plan."""
    keys: list[str] = [k for k in ELEMENT_KEYS]
    for p in plans:
        keys += [e["element"] for e in p.get("elements") or [] if e["element"] not in keys]
    rows = []
    for key in keys:
        values = []
        for p in plans:
            found = next((e for e in p.get("elements") or [] if e["element"] == key), None)
            values.append(element_display(found) if found else "—")
        if any(v != "—" for v in values):
            rows.append([ELEMENT_NAMES.get(key, key), *values])
    return rows


def meets_text(plan: dict[str, Any]) -> str:
    if plan.get("meets_constraints", True):
        return "是"
    unmet = plan.get("unmet") or []
    return "否：" + "；".join(unmet) if unmet else "否"


def simulation_rows(simulation: dict[str, Any] | None, columns: list[str]) -> list[list[Any]]:
    """The sandbox's A/B rows re-ordered to `columns` (plan names); a plan it did not simulate gets —."""
    block = (simulation or {}).get("comparison") or {}
    sim_cols = [str(c) for c in block.get("columns") or []]
    if len(sim_cols) < 2:
        return []
    rows = []
    for r in block.get("rows") or []:
        cells = list(r)
        rows.append([cells[0], *[cells[sim_cols.index(c)] if c in sim_cols and sim_cols.index(c) < len(cells)
                                  else "—" for c in columns]])
    return rows


def compare_drafts(conn: psycopg.Connection[Any], principal: Principal, codes: list[str]) -> dict[str, Any]:
    """The plans of one or several drafts side by side: one column per plan (「草案编号·方案」 when
    several drafts), one row per element, then whether it meets the designer's constraints and the
    sandbox's A/B figures. Returns the table and a `comparison` display block."""
    _forbid(principal, "比较要素方案草案")
    wanted = list(dict.fromkeys(c.strip().upper() for c in codes if c and c.strip()))
    if not wanted:
        raise DraftNotFound("请给出要比较的草案编号，例如 DRAFT-20261123-001 (no draft code)")
    if len(wanted) > _MAX_COMPARE:
        raise PuyiError(f"一次最多比较 {_MAX_COMPARE} 份草案 (too many drafts)")
    drafts = [get_draft(conn, principal, c) for c in wanted]
    several = len(drafts) > 1
    columns: list[str] = []
    plans: list[dict[str, Any]] = []
    rows_sim: list[list[list[Any]]] = []
    for d in drafts:
        names = [p.get("name", "") for p in d["plans"]]
        columns += [f"{d['code']}·{n}" if several else n for n in names]
        plans += d["plans"]
        rows_sim.append(simulation_rows(d["simulation"], names))
    rows = plan_element_rows(plans)
    rows.append(["满足设计约束", *[meets_text(p) for p in plans]])
    # Sandbox rows by label; a draft without that figure (or without a simulation) shows —.
    labels: list[str] = []
    for block in rows_sim:
        labels += [str(r[0]) for r in block if str(r[0]) not in labels]
    for label in labels:
        cells: list[Any] = []
        for d, block in zip(drafts, rows_sim, strict=True):
            found = next((r for r in block if str(r[0]) == label), None)
            cells += list(found[1:]) if found else ["—"] * len(d["plans"])
        rows.append([label, *cells])
    title = "要素方案对比：" + "、".join(f"{d['name']}（{d['code']}）" for d in drafts)
    columns = ["要素", *columns]
    return {
        "drafts": [{"code": d["code"], "name": d["name"], "plans": [p.get("name") for p in d["plans"]]} for d in drafts],
        "columns": columns, "rows": rows,
        "block": {"type": "comparison", "title": title, "columns": columns, "rows": rows},
    }
