"""A starter question set for `puyi eval`, built from a bank folder's own files (data contract).

`puyi eval questions --bank FOLDER --out FILE` writes one for any bank, to be reviewed and extended by
hand; the demo bank's frozen set, eval/data/demo_questions.jsonl, is this module's output for the demo
bank (deterministic for its seed, so re-running reproduces the file):

    .venv/bin/python -m eval.question_set [--seed 20261123] [--out eval/data/demo_questions.jsonl]

Expected numbers are summed here straight from metrics_monthly.csv (plain Python over the files, not
through Puyi's code). Knowledge questions ask for each readable document by title, and about one passage
of it, with that passage (cut by Puyi's chunker) as the ragas reference. Routes without figures (help,
refused, element_plan, alert, catalogue lists, general knowledge) reuse the name-free questions of
eval/data/routing.jsonl, with their expected route. A section whose files or users the bank lacks is left
out, not guessed.
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


def _num(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


def questions(bank: Path, seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    products = {p["code"]: p for p in _csv(bank / "products.csv")}
    branches = _csv(bank / "branches.csv")
    users = _csv(bank / "users.csv")
    facts = _csv(bank / "metrics_monthly.csv") if (bank / "metrics_monthly.csv").is_file() else []
    months = sorted({r["month"] for r in facts})

    def someone(*roles: str) -> str | None:
        return next((u["user_id"] for role in roles for u in users if u.get("role") == role), None)

    admin, designer, risk = someone("admin"), someone("designer", "admin"), someone("risk", "admin")
    rms = [u for u in users if u.get("role") == "rm"]

    # Independent sums: (product, month, branch) → balance / customers.
    bal: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    cust: dict[tuple[str, str], dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in facts:
        bal[(r["product_code"], r["month"])][r["branch_code"]] += _num(r.get("balance"))
        cust[(r["product_code"], r["month"])][r["branch_code"]] += _num(r.get("customers"))
    sold = sorted({r["product_code"] for r in facts if products.get(r["product_code"], {}).get("status") == "operating"})
    # Product names that are unambiguous (no other product's name contains them) keep routing honest.
    names = {c: products[c]["name"] for c in sold}
    plain = [c for c in sold if not any(names[c] in n for o, n in names.items() if o != c) and re.search(r"[一-鿿]", names[c])]

    out: list[dict[str, Any]] = []
    n = 0

    def add(route: str, question: str, user: str | None, expect: dict[str, Any] | None = None, session: str | None = None) -> None:
        nonlocal n
        n += 1
        item: dict[str, Any] = {"id": f"{route[:3]}-{n:03d}", "question": question, "as": user, "route": route}
        if session:
            item["session"] = session
        item["expect"] = expect or {}
        out.append(item)

    latest = months[-1] if months else ""
    # metrics: bank-wide balances and customer counts (admin), then an rm's own scope.
    for code in rnd.sample(plain, min(40, len(plain))) if admin else []:
        month = rnd.choice(months[-6:])
        total = round(sum(bal[(code, month)].values()), 2)
        if total > 0:
            add("metrics", f"{_label(month)}{names[code]}的余额是多少", admin,
                {"numbers": [total], "phrases": [_label(month)]})
    for code in rnd.sample(plain, min(20, len(plain))) if admin else []:
        total = sum(cust[(code, latest)].values())
        add("metrics", f"{_label(latest)}{names[code]}有多少客户", admin, {"numbers": [total]})
    for i, code in enumerate(rnd.sample(plain, min(20, len(plain))) if rms else []):
        u = rms[i % len(rms)]
        scope = _subtree(branches, u["branch_code"])
        value = round(sum(v for b, v in bal[(code, latest)].items() if b in scope), 2)
        if value <= 0:
            continue
        add("metrics", f"{_label(latest)}{names[code]}的余额是多少", u["user_id"], {"numbers": [value]})
    # conversations: a figure, then "and the month before?"
    for i, code in enumerate(rnd.sample(plain, min(10, len(plain))) if admin and len(months) >= 2 else []):
        s = f"conv{i}"
        m1, m0 = months[-1], months[-2]
        if sum(bal[(code, m1)].values()) <= 0 or sum(bal[(code, m0)].values()) <= 0:
            continue
        add("metrics", f"{_label(m1)}{names[code]}的余额是多少", admin,
            {"numbers": [round(sum(bal[(code, m1)].values()), 2)]}, session=s)
        add("metrics", f"那{_label(m0)}呢", admin, {"numbers": [round(sum(bal[(code, m0)].values()), 2)]}, session=s)

    # knowledge: each document readable by an rm, asked by its title; it must be cited.
    rm = rms[0]["user_id"] if rms else someone("designer", "risk", "admin")
    manifest = bank / "docs" / "manifest.csv"
    readable = [d for d in (_csv(manifest) if manifest.is_file() and rm else [])
                if (d.get("access") or "internal") in ("public", "internal") and (d.get("title") or "").strip()
                and (bank / "docs" / d["path"]).is_file()]
    for d in readable:
        add("knowledge", f"{d['title']}的主要内容是什么", rm, {"doc": d["path"]})

    # knowledge with references (for ragas): one passage of each readable document, asked about by its
    # section heading, or by the FAQ question it answers. The reference context is the passage as Puyi's
    # chunker cuts it, so ragas' string similarity compares passage with passage.
    for d in readable:
        picked = _passage_question(bank / "docs" / d["path"], d["title"], d.get("doc_type") or "other", rnd)
        if picked:
            question, passage = picked
            add("knowledge", question, rm, {"doc": d["path"]})
            out[-1]["reference"] = passage
            out[-1]["reference_contexts"] = [passage]

    routing = [json.loads(ln) for ln in (DATA / "routing.jsonl").read_text(encoding="utf-8").splitlines() if ln.strip()]
    who = {"element_plan": designer, "alert": risk, "help": rm, "refused": rm, "catalog": admin, "knowledge": rm}
    for q in routing:
        asker = who.get(q["route"])
        if not q.get("names") and asker:
            add(q["route"], q["question"], asker)
    return out


_NUMBERING = re.compile(r"^(第[一二三四五六七八九十百0-9]+[章节条]|[一二三四五六七八九十]+、|[0-9]+[.、])\s*")


def _passage_question(path: Path, title: str, doc_type: str, rnd: random.Random) -> tuple[str, str] | None:
    """(question, passage) for one passage of a document, or None when no passage has its own heading."""
    from ingest.chunking import chunk_blocks
    from ingest.documents import DocumentError, load_document

    try:
        blocks = load_document(path)
    except DocumentError:
        return None  # unreadable: `puyi eval` reports it when indexing
    chunks = [c for c in chunk_blocks(blocks, title=title, doc_type=doc_type) if len(c.text) >= 30]
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
