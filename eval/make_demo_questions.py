"""Generate eval/data/demo_questions.jsonl from the demo bank's own CSV files.

Expected numbers are summed here straight from metrics_monthly.csv (plain Python over the files, not
through Puyi's code), then frozen into the JSONL file. The demo bank is deterministic for its seed, so
re-running reproduces the same file:

    .venv/bin/python -m eval.make_demo_questions [--seed 20261123] [--out eval/data/demo_questions.jsonl]

Routes without figures (help, refused, element_plan, alert, catalogue lists, general knowledge) reuse the
name-free questions of eval/data/routing.jsonl, with their expected route.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _label(month: str) -> str:
    y, m = month.split("-")
    return f"{y}年{int(m)}月"


def _subtree(branches: list[dict[str, str]], root: str) -> set[str]:
    kids: dict[str, list[str]] = defaultdict(list)
    for b in branches:
        kids[b["parent_code"]].append(b["code"])
    seen, todo = set(), [root]
    while todo:
        c = todo.pop()
        if c not in seen:
            seen.add(c)
            todo += kids[c]
    return seen


def questions(bank: Path, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    products = {p["code"]: p for p in _csv(bank / "products.csv")}
    branches = _csv(bank / "branches.csv")
    users = _csv(bank / "users.csv")
    facts = _csv(bank / "metrics_monthly.csv")
    months = sorted({r["month"] for r in facts})
    admin = next(u["user_id"] for u in users if u["role"] == "admin")
    designer = next(u["user_id"] for u in users if u["role"] == "designer")
    risk = next(u["user_id"] for u in users if u["role"] == "risk")
    rms = [u for u in users if u["role"] == "rm"]

    # Independent sums: (product, month, branch) → balance / customers.
    bal: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    cust: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in facts:
        bal[(r["product_code"], r["month"])][r["branch_code"]] += float(r["balance"])
        cust[(r["product_code"], r["month"])][r["branch_code"]] += float(r["customers"])
    sold = sorted({r["product_code"] for r in facts if products.get(r["product_code"], {}).get("status") == "operating"})
    # Product names that are unambiguous (no other product's name contains them) keep routing honest.
    names = {c: products[c]["name"] for c in sold}
    plain = [c for c in sold if not any(names[c] in n for o, n in names.items() if o != c) and re.search(r"[一-鿿]", names[c])]

    out: list[dict[str, Any]] = []
    n = 0

    def add(route: str, question: str, user: str, expect: dict[str, Any] | None = None, session: str | None = None) -> None:
        nonlocal n
        n += 1
        item: dict[str, Any] = {"id": f"{route[:3]}-{n:03d}", "question": question, "as": user, "route": route}
        if session:
            item["session"] = session
        item["expect"] = expect or {}
        out.append(item)

    latest = months[-1]
    # metrics: bank-wide balances and customer counts (admin), then an rm's own scope.
    for code in rnd.sample(plain, min(40, len(plain))):
        month = rnd.choice(months[-6:])
        total = round(sum(bal[(code, month)].values()), 2)
        add("metrics", f"{_label(month)}{names[code]}的余额是多少", admin,
            {"numbers": [total], "phrases": [_label(month)]})
    for code in rnd.sample(plain, min(20, len(plain))):
        total = sum(cust[(code, latest)].values())
        add("metrics", f"{_label(latest)}{names[code]}有多少客户", admin, {"numbers": [total]})
    for i, code in enumerate(rnd.sample(plain, min(20, len(plain)))):
        u = rms[i % len(rms)]
        scope = _subtree(branches, u["branch_code"])
        value = round(sum(v for b, v in bal[(code, latest)].items() if b in scope), 2)
        if value <= 0:
            continue
        add("metrics", f"{_label(latest)}{names[code]}的余额是多少", u["user_id"], {"numbers": [value]})
    # conversations: a figure, then "and the month before?"
    for i, code in enumerate(rnd.sample(plain, min(10, len(plain)))):
        s = f"conv{i}"
        m1, m0 = months[-1], months[-2]
        add("metrics", f"{_label(m1)}{names[code]}的余额是多少", admin,
            {"numbers": [round(sum(bal[(code, m1)].values()), 2)]}, session=s)
        add("metrics", f"那{_label(m0)}呢", admin, {"numbers": [round(sum(bal[(code, m0)].values()), 2)]}, session=s)

    # knowledge: each document readable by an rm, asked by its title; it must be cited.
    rm = rms[0]["user_id"]
    for d in _csv(bank / "docs" / "manifest.csv"):
        if d["access"] in ("public", "internal") and d["title"]:
            add("knowledge", f"{d['title']}的主要内容是什么", rm, {"doc": d["path"]})

    # knowledge with references (for ragas): one passage of each readable document, asked about by its
    # section heading, or by the FAQ question it answers. The reference context is the passage as Puyi's
    # chunker cuts it, so ragas' string similarity compares passage with passage.
    for d in _csv(bank / "docs" / "manifest.csv"):
        if d["access"] not in ("public", "internal") or not d["title"]:
            continue
        picked = _passage_question(bank / "docs" / d["path"], d["title"], d["doc_type"], rnd)
        if picked:
            question, passage = picked
            add("knowledge", question, rm, {"doc": d["path"]})
            out[-1]["reference"] = passage
            out[-1]["reference_contexts"] = [passage]

    routing = [json.loads(ln) for ln in (DATA / "routing.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
    who = {"element_plan": designer, "alert": risk, "help": rm, "refused": rm, "catalog": admin, "knowledge": rm}
    for q in routing:
        if not q.get("names") and q["route"] in who:
            add(q["route"], q["question"], who[q["route"]])
    return out


_NUMBERING = re.compile(r"^(第[一二三四五六七八九十百0-9]+[章节条]|[一二三四五六七八九十]+、|[0-9]+[.、])\s*")


def _passage_question(path: Path, title: str, doc_type: str, rnd: random.Random) -> tuple[str, str] | None:
    """(question, passage) for one passage of a document, or None when no passage has its own heading."""
    from ingest.chunking import chunk_blocks
    from ingest.documents import load_document

    chunks = [c for c in chunk_blocks(load_document(path), title=title, doc_type=doc_type) if len(c.text) >= 30]
    faqs = [c for c in chunks if c.kind == "faq" and re.match(r"^(问|Q)\s*[:：]", c.text)]
    if faqs:
        c = rnd.choice(faqs)
        asked = re.split(r"\s*(?:答|A)\s*[:：]", re.sub(r"^(问|Q)\s*[:：]\s*", "", c.text), maxsplit=1)[0].strip()
        return f"《{title}》里，{asked.rstrip('？?')}？", c.text
    sections = [c for c in chunks if len(c.heading_path) >= 2 and c.kind in ("text", "table")
                and _NUMBERING.sub("", c.heading_path[-1]).strip() not in ("", title)]
    if not sections:
        return None
    c = rnd.choice(sections)
    return f"《{title}》里关于“{_NUMBERING.sub('', c.heading_path[-1]).strip()}”是怎么规定的？", c.text


def main() -> None:
    from ingest.demo import write_demo_bank

    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--out", type=Path, default=DATA / "demo_questions.jsonl")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bank = Path(tmp) / "bank"
        write_demo_bank(bank, seed=args.seed)
        items = questions(bank)
    args.out.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in items), encoding="utf-8")
    print(f"{len(items)} questions → {args.out}")


if __name__ == "__main__":
    main()
