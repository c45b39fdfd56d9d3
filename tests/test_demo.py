"""The demo-bank generator: deterministic, valid against the contract, and with exactly the planted alerts.

No database: the bank is generated once per module and checked through its CSV files and the
importer's validation. The alert rules are recomputed here from the files, with the contract's
default thresholds and formulas (facts summed over all branches, latest month 2026-10).
"""

from __future__ import annotations

import csv
import hashlib
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from ingest.demo import write_demo_bank
from ingest.demo_catalog import build_catalog
from ingest.importer import validate_folder

SEED = 20261123
LATEST, PREVIOUS = "2026-10", "2026-09"
LAST_SIX = ("2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10")
NPL = ("次级", "可疑", "损失")
FACTS = ("balance", "interest_income", "interest_expense", "fee_income", "opex", "provision", "npl_balance",
         "overdue_balance")
ZERO = Decimal(0)
Row = dict[str, str]


@dataclass
class Demo:
    path: Path
    counts: dict[str, int]
    seconds: float


def _read(folder: Path, name: str) -> list[Row]:
    with (folder / name).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _digests(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    path = tmp_path_factory.mktemp("demo") / "bank"
    started = time.perf_counter()
    counts = write_demo_bank(path, seed=SEED)
    return Demo(path, counts, time.perf_counter() - started)


@pytest.fixture(scope="module")
def planted() -> dict[str, list[str]]:
    return build_catalog(random.Random(SEED)).planted


@pytest.fixture(scope="module")
def products(demo: Demo) -> dict[str, Row]:
    return {r["code"]: r for r in _read(demo.path, "products.csv")}


@pytest.fixture(scope="module")
def metrics(demo: Demo) -> list[Row]:
    return _read(demo.path, "metrics_monthly.csv")


@pytest.fixture(scope="module")
def summed(metrics: list[Row]) -> dict[tuple[str, str], dict[str, Decimal]]:
    """(product, month) → facts summed over all branches."""
    out: dict[tuple[str, str], dict[str, Decimal]] = {}
    for r in metrics:
        acc = out.setdefault((r["product_code"], r["month"]), dict.fromkeys(FACTS, ZERO))
        for f in FACTS:
            if r[f]:
                acc[f] += Decimal(r[f])
    return out


def _fired(products: dict[str, Row], summed: dict[tuple[str, str], dict[str, Decimal]]) -> dict[str, set[str]]:
    """The default alert rules of the data contract, evaluated on the latest month."""
    fired: dict[str, set[str]] = defaultdict(set)
    for code, p in products.items():
        now = summed.get((code, LATEST))
        if p["level"] != "sellable" or now is None:
            continue
        before = summed.get((code, PREVIOUS))
        if p["category"] == "loan" and now["balance"] > 0:
            npl_rate = now["npl_balance"] / now["balance"] * 100
            overdue_rate = now["overdue_balance"] / now["balance"] * 100
            if npl_rate >= 3:
                fired["npl_suspend"].add(code)
            elif npl_rate >= Decimal("1.2"):
                fired["npl_watch"].add(code)
            if before is not None and before["balance"] > 0 and overdue_rate >= 2:
                prev_rate = before["overdue_balance"] / before["balance"] * 100
                if prev_rate == 0 or overdue_rate / prev_rate - 1 >= Decimal("0.3"):
                    fired["overdue_jump"].add(code)
        if (p["category"] == "deposit" and before is not None and before["balance"] > 0
                and (now["balance"] / before["balance"] - 1) * 100 <= -20):
            fired["deposit_drain"].add(code)
        if p["status"] == "operating":
            nets = []
            for month in LAST_SIX:
                f = summed.get((code, month))
                if f is not None:
                    nets.append(f["interest_income"] - f["interest_expense"] + f["fee_income"] - f["opex"]
                                - f["provision"])
            if len(nets) == len(LAST_SIX) and all(n < 0 for n in nets):
                fired["loss_making"].add(code)
    return fired


# --- generation ------------------------------------------------------------------------------------


def test_generation_is_fast_and_small(demo: Demo) -> None:
    assert demo.seconds < 15, f"generation took {demo.seconds:.1f} s"
    size = sum(p.stat().st_size for p in demo.path.rglob("*") if p.is_file())
    assert size < 40 * 1024 * 1024, f"{size / 1e6:.1f} MB"
    assert 20_000 <= demo.counts["metrics_monthly.csv"] <= 350_000
    assert 10_000 <= demo.counts["holdings.csv"] <= 300_000
    assert 15_000 <= demo.counts["loans.csv"] <= 30_000
    assert 5_000 <= demo.counts["customers.csv"] <= 7_000
    assert not (demo.path / "alert_rules.yaml").exists()
    for name, n in demo.counts.items():
        with (demo.path / name).open(encoding="utf-8") as fh:
            assert sum(1 for _ in fh) == n + 1, name


def test_same_seed_gives_identical_files_and_another_seed_differs(demo: Demo, tmp_path: Path) -> None:
    again = tmp_path / "again"
    # In another interpreter with another string-hash seed, so that no set or dict order leaks into the files.
    code = f"from pathlib import Path; from ingest.demo import write_demo_bank; write_demo_bank(Path({str(again)!r}), {SEED})"
    env = {**os.environ, "PYTHONHASHSEED": "4711"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).resolve().parents[1])
    assert _digests(again) == _digests(demo.path)
    other = tmp_path / "other"
    write_demo_bank(other, seed=SEED + 1)
    assert (other / "metrics_monthly.csv").read_bytes() != (demo.path / "metrics_monthly.csv").read_bytes()
    assert (other / "loans.csv").read_bytes() != (demo.path / "loans.csv").read_bytes()


def test_folder_passes_the_importer_validation(demo: Demo) -> None:
    _parsed, errors, warnings = validate_folder(demo.path)
    assert errors == []
    # Only the absent (optional) alert_rules.yaml is worth a warning.
    assert len(warnings) <= 2, [str(w) for w in warnings]
    assert all(w.file == "alert_rules.yaml" or w.file.startswith("docs") for w in warnings), [str(w) for w in warnings]


# --- catalogue and organisation ----------------------------------------------------------------------


def test_catalogue_has_441_sellable_products_over_five_categories(products: dict[str, Row]) -> None:
    sellable = [p for p in products.values() if p["level"] == "sellable"]
    assert len(sellable) == 441
    per_category: dict[str, int] = defaultdict(int)
    for p in sellable:
        per_category[p["category"]] += 1
    assert set(per_category) == {"deposit", "loan", "payment", "intermediary", "market"}
    assert 100 <= per_category["deposit"] <= 120 and 130 <= per_category["loan"] <= 150
    prefix = {"deposit": "DP", "loan": "LN", "payment": "PY", "intermediary": "IM", "market": "MK"}
    assert all(p["code"].startswith(prefix[p["category"]]) for p in sellable)
    levels: dict[str, int] = defaultdict(int)
    for p in products.values():
        levels[p["level"]] += 1
    assert 50 <= levels["cluster"] <= 70 and 30 <= levels["base"] <= 40 and 20 <= levels["atomic"] <= 30
    names = [p["name"] for p in products.values()]
    assert len(set(names)) == len(names)
    assert all(not n.isascii() for n in names)
    assert {"尊享贷", "尊享贷（公务员版）"} <= set(names)
    statuses = {p["status"] for p in sellable}
    assert {"operating", "suspended", "retired"} <= statuses and len(statuses) == 6
    assert sum(1 for p in sellable if p["status"] == "operating") > 400
    assert all(p["retire_date"] for p in sellable if p["status"] == "retired")
    assert all(p["description"] for p in sellable)
    assert sum(1 for p in sellable if p["aliases"]) >= 80


def test_every_live_sellable_product_traces_down_to_a_subject(demo: Demo, products: dict[str, Row]) -> None:
    subjects = {r["code"] for r in _read(demo.path, "subjects.csv")}
    assert 30 <= len(subjects) <= 50
    down: dict[str, list[str]] = defaultdict(list)
    for link in _read(demo.path, "product_links.csv"):
        down[link["from_code"]].append(link["to_code"])

    def reaches(code: str) -> bool:
        return code in subjects or any(reaches(d) for d in down.get(code, ()))

    sellable = [c for c, p in products.items() if p["level"] == "sellable"]
    assert all(reaches(c) for c in sellable if products[c]["status"] != "retired")
    assert any(len(down[c]) > 1 for c in sellable), "no bundle at the sellable level"


def test_elements_and_system_codes_cover_the_sellable_products(demo: Demo, products: dict[str, Row]) -> None:
    elements: dict[str, dict[str, Row]] = defaultdict(dict)
    for r in _read(demo.path, "product_elements.csv"):
        elements[r["product_code"]][r["element"]] = r
    for code, p in products.items():
        if p["level"] != "sellable":
            continue
        keys = set(elements[code])
        if p["category"] == "loan":
            assert {"rate_min", "rate_max", "term_max_months", "amount_max", "repayment", "collateral"} <= keys
            assert elements[code]["rate_min"]["unit"] == "%"
        elif p["category"] == "deposit":
            assert {"rate_min", "rate_max", "min_amount", "early_repayment"} <= keys
    risk = [r["value"] for e in elements.values() for r in e.values() if r["element"] == "risk_level"]
    assert risk and set(risk) <= {"R1", "R2", "R3", "R4", "R5"}
    systems = _read(demo.path, "system_codes.csv")
    assert {r["system"] for r in systems} == {"core", "credit", "wealth", "card", "payment"}
    mapped: dict[str, int] = defaultdict(int)
    for r in systems:
        mapped[r["product_code"]] += 1
    assert set(mapped) == {c for c, p in products.items() if p["level"] == "sellable"}
    assert max(mapped.values()) <= 3 and any(n > 1 for n in mapped.values())


def test_organisation_and_users(demo: Demo) -> None:
    branches = _read(demo.path, "branches.csv")
    levels: dict[str, int] = defaultdict(int)
    for b in branches:
        levels[b["level"]] += 1
    assert levels == {"head": 1, "branch": 6, "sub_branch": len(branches) - 7}
    users = _read(demo.path, "users.csv")
    assert 35 <= len(users) <= 50
    assert {u["role"] for u in users} == {"rm", "designer", "risk", "admin"}
    assert sum(1 for u in users if u["wecom_userid"]) > len(users) * 0.7


# --- business data and the planted situations -----------------------------------------------------------


def test_loans_add_up_to_the_latest_loan_metrics(demo: Demo, metrics: list[Row], products: dict[str, Row]) -> None:
    from_loans: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO, ZERO])
    for ln in _read(demo.path, "loans.csv"):
        acc = from_loans[(ln["product_code"], ln["branch_code"])]
        balance = Decimal(ln["balance"])
        acc[0] += balance
        if ln["five_class"] in NPL:
            acc[1] += balance
        if int(ln["overdue_days"]) > 0:
            acc[2] += balance
    from_metrics = {
        (r["product_code"], r["branch_code"]): [Decimal(r["balance"]), Decimal(r["npl_balance"]),
                                                Decimal(r["overdue_balance"])]
        for r in metrics if r["month"] == LATEST and products[r["product_code"]]["category"] == "loan"
    }
    assert len(from_metrics) > 1000
    assert from_metrics == dict(from_loans)


def test_holdings_add_up_to_the_metrics_of_the_held_products(demo: Demo, metrics: list[Row]) -> None:
    branch_of = {c["customer_id"]: c["branch_code"] for c in _read(demo.path, "customers.csv")}
    from_holdings: dict[tuple[str, str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    for h in _read(demo.path, "holdings.csv"):
        acc = from_holdings[(h["month"], h["product_code"], branch_of[h["customer_id"]])]
        acc[0] += Decimal(h["balance"])
        acc[1] += 1
    held = {key[1] for key in from_holdings}
    assert 5 <= len(held) <= 20
    from_metrics = {(r["month"], r["product_code"], r["branch_code"]): [Decimal(r["balance"]), Decimal(r["customers"])]
                    for r in metrics if r["product_code"] in held}
    assert from_metrics == dict(from_holdings)


def test_metrics_cover_24_months_of_live_products(metrics: list[Row], products: dict[str, Row]) -> None:
    months = sorted({r["month"] for r in metrics})
    assert months[0] == "2024-11" and months[-1] == LATEST and len(months) == 24
    for r in metrics[:: max(1, len(metrics) // 2000)]:
        p = products[r["product_code"]]
        assert p["launch_date"] and p["launch_date"][:7] <= r["month"]
        assert not p["retire_date"] or p["retire_date"][:7] >= r["month"]
        assert (r["npl_balance"] != "") == (p["category"] == "loan")
        assert Decimal(r["balance"]) > 0 and int(r["customers"]) > 0


def test_each_default_rule_fires_on_exactly_the_planted_products(
    products: dict[str, Row], summed: dict[tuple[str, str], dict[str, Decimal]], planted: dict[str, list[str]]
) -> None:
    fired = _fired(products, summed)
    for rule in ("npl_suspend", "npl_watch", "overdue_jump", "deposit_drain", "loss_making"):
        assert fired[rule] == set(planted[rule]), rule
        assert all(products[c]["status"] == "operating" for c in planted[rule])
    assert len(planted["npl_watch"]) >= 2
    assert products[planted["zunxiang"][0]]["name"] == "尊享贷"


def test_npl_of_the_suspend_product_is_concentrated_in_one_sub_branch(
    demo: Demo, planted: dict[str, list[str]]
) -> None:
    code, branch = planted["npl_suspend"][0], planted["npl_branch"][0]
    per_branch: dict[str, Decimal] = defaultdict(Decimal)
    for ln in _read(demo.path, "loans.csv"):
        if ln["product_code"] == code and ln["five_class"] in NPL:
            per_branch[ln["branch_code"]] += Decimal(ln["balance"])
    levels = {b["code"]: b["level"] for b in _read(demo.path, "branches.csv")}
    assert levels[branch] == "sub_branch"
    assert per_branch[branch] / sum(per_branch.values()) > Decimal("0.6")


def test_new_product_grows_mostly_by_substituting_older_products(
    demo: Demo, products: dict[str, Row], summed: dict[tuple[str, str], dict[str, Decimal]],
    planted: dict[str, list[str]],
) -> None:
    new = planted["substitution_new"][0]
    assert products[new]["launch_date"].startswith("2026-02")
    assert products[new]["category"] in ("deposit", "intermediary")
    held: dict[str, dict[str, dict[str, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    for r in _read(demo.path, "holdings.csv"):
        held[r["month"]][r["customer_id"]][r["product_code"]] = Decimal(r["balance"])
    months = sorted(held)
    newcomers = substituted = 0
    for before, now in zip(months, months[1:], strict=False):
        for customer, products_now in held[now].items():
            had = held[before].get(customer, {})
            if new not in products_now or new in had:
                continue
            newcomers += 1
            if any(p != new and (p not in products_now or products_now[p] < b) for p, b in had.items()):
                substituted += 1
    assert newcomers >= 300
    assert substituted / newcomers >= 0.6
    # Fast growth of the new product, older sources shrinking, the category barely growing.
    assert summed[(new, LATEST)]["balance"] > 3 * summed[(new, "2026-03")]["balance"]
    for old in planted["substitution_old"]:
        assert summed[(old, LATEST)]["balance"] < summed[(old, "2026-01")]["balance"]
    category = products[new]["category"]

    def total(month: str) -> Decimal:
        return sum((f["balance"] for (c, m), f in summed.items() if m == month and products[c]["category"] == category),
                   ZERO)

    assert total(LATEST) / total("2026-01") - 1 < Decimal("0.04")


def test_documents_manifest_is_written(demo: Demo) -> None:
    manifest = demo.path / "docs" / "manifest.csv"
    assert manifest.read_text(encoding="utf-8").splitlines()[0] == (
        "path,title,doc_type,product_codes,access,effective_date")
