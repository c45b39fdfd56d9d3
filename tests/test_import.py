"""The importer against the data contract: good folders load exactly, bad ones load nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from core.db import Database
from ingest import importer
from ingest.importer import ImportFailed, Problem, import_folder, validate_folder
from tests.bankfactory import COUNTS, HEAD_OFFICE, bank_rows, csv_text, write_small_bank

DATA_TABLES = (
    "branches", "branch_closure", "users", "products", "subjects", "product_links", "product_elements",
    "system_codes", "metrics_monthly", "customers", "holdings", "loans", "ftp_curve", "competitor_rates",
    "documents", "bank_files", "imports",
)


def snapshot(db: Database) -> dict[str, Any]:
    """Row counts, the imports log, the catalogue version and a checksum of the metrics."""
    with db.connection() as conn:
        counts = conn.execute(" UNION ALL ".join(f"SELECT '{t}' AS t, count(*) AS n FROM {t}" for t in DATA_TABLES))
        snap: dict[str, Any] = {r["t"]: r["n"] for r in counts}
        snap["imports_log"] = conn.execute("SELECT id, content_hash FROM imports ORDER BY id").fetchall()
        snap["catalog_version"] = conn.execute("SELECT version FROM catalog_version").fetchone()
        snap["balance_sum"] = conn.execute("SELECT sum(balance) AS s FROM metrics_monthly").fetchone()
        snap["head"] = conn.execute("SELECT code FROM branches WHERE level = 'head'").fetchall()
    return snap


def query(db: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute(sql, params).fetchall()


def fails_with(db: Database, folder: Path) -> list[Problem]:
    with pytest.raises(ImportFailed) as info:
        import_folder(db, folder)
    assert info.value.problems
    return info.value.problems


def has(problems: list[Problem], file: str, line: int | None, column: str | None, fragment: str) -> bool:
    return any(
        p.file == file and p.line == line and p.column == column and fragment in p.message for p in problems
    )


@pytest.fixture()
def loaded(empty_db: Database, tmp_path: Path) -> Database:
    """The small bank already imported: failures must leave it exactly as it is."""
    import_folder(empty_db, write_small_bank(tmp_path / "loaded-bank"))
    return empty_db


# --- good folders -------------------------------------------------------------------------------


def test_good_folder_validates_clean(bank_dir: Path) -> None:
    bank, errors, warnings = validate_folder(bank_dir)
    assert errors == [] and warnings == []
    assert bank.head_office == HEAD_OFFICE
    assert bank.counts() == COUNTS


def test_good_folder_loads_exact_counts(empty_db: Database, bank_dir: Path) -> None:
    messages: list[str] = []
    result = import_folder(empty_db, bank_dir, progress=messages.append)
    assert result.status == "loaded"
    assert result.head_office == "H000"
    assert result.counts == COUNTS
    assert result.warnings == []
    snap = snapshot(empty_db)
    for table, n in COUNTS.items():
        assert snap[table] == n, table
    assert snap["branch_closure"] == 17 and snap["bank_files"] == 1 and snap["imports"] == 1
    row = query(empty_db, "SELECT * FROM imports")[0]
    assert row["head_office"] == "H000" and row["replaced"] is False and row["counts"] == COUNTS
    assert row["folder"] == str(bank_dir.resolve())
    # Progress: one line per file validated and per table loaded, with row counts.
    assert "校验 metrics_monthly.csv：96 行" in messages
    assert "加载 metrics_monthly：96 行" in messages
    assert "加载 product_links：31 行" in messages


def test_values_are_loaded_with_their_types(empty_db: Database, bank_dir: Path) -> None:
    import_folder(empty_db, bank_dir)
    sd = query(empty_db, "SELECT * FROM products WHERE code = 'SL001'")[0]
    assert sd["aliases"] == ["快贷", "薪易贷"] and str(sd["launch_date"]) == "2021-01-15"
    assert sd["retire_date"] is None and sd["extra"] == {}
    assert query(empty_db, "SELECT aliases, description FROM products WHERE code = 'CD01'")[0] == {
        "aliases": [], "description": ""}
    # Months become the first day of the month; empty optional cells become NULL.
    m = query(empty_db, "SELECT * FROM metrics_monthly WHERE product_code = 'SD001' AND branch_code = 'S101'"
                        " ORDER BY month")
    assert [str(r["month"]) for r in m] == ["2026-08-01", "2026-09-01", "2026-10-01"]
    assert m[0]["npl_balance"] is None and str(m[0]["balance"]) == "120000000.00"
    assert query(empty_db, "SELECT rate FROM loans WHERE loan_id = 'L0003'")[0]["rate"] is None
    assert query(empty_db, "SELECT parent_code FROM branches WHERE code = 'H000'")[0]["parent_code"] is None
    users = {r["user_id"]: r["wecom_userid"] for r in query(empty_db, "SELECT * FROM users")}
    assert users["rm_qd"] == "zhangwei" and users["rm_sn"] is None
    links = query(empty_db, "SELECT to_code, to_subject FROM product_links WHERE from_code IN ('AL01', 'BL01')"
                            " ORDER BY to_code")
    assert links == [{"to_code": "130101", "to_subject": True}, {"to_code": "AL01", "to_subject": False},
                     {"to_code": "AL02", "to_subject": False}]
    rules = query(empty_db, "SELECT * FROM bank_files")[0]
    assert rules["name"] == "alert_rules.yaml" and "npl_watch" in rules["content"]


def test_branch_closure_is_complete(empty_db: Database, bank_dir: Path) -> None:
    import_folder(empty_db, bank_dir)
    rows = {(r["ancestor"], r["descendant"], r["depth"])
            for r in query(empty_db, "SELECT * FROM branch_closure")}
    codes = ["H000", "B100", "S101", "S102", "B200", "S201", "S202"]
    expected = {(c, c, 0) for c in codes}
    expected |= {("H000", b, 1) for b in ("B100", "B200")}
    expected |= {(b, s, 1) for b, s in (("B100", "S101"), ("B100", "S102"), ("B200", "S201"), ("B200", "S202"))}
    expected |= {("H000", s, 2) for s in ("S101", "S102", "S201", "S202")}
    assert rows == expected


def test_reimport_same_folder_is_unchanged(empty_db: Database, bank_dir: Path) -> None:
    first = import_folder(empty_db, bank_dir)
    before = snapshot(empty_db)
    again = import_folder(empty_db, bank_dir)
    assert again.status == "unchanged"
    assert again.counts == first.counts and again.head_office == "H000"
    assert snapshot(empty_db) == before  # not even the catalogue version moved


def test_unchanged_reports_the_earlier_warnings(empty_db: Database, tmp_path: Path) -> None:
    folder = write_small_bank(tmp_path / "b", drop=["loans.csv"])
    first = import_folder(empty_db, folder)
    assert [str(w) for w in first.warnings] == ["loans.csv: 可选文件不存在 (optional file absent)"]
    again = import_folder(empty_db, folder)
    assert again.status == "unchanged" and again.warnings == first.warnings


def test_changed_folder_reloads(loaded: Database, tmp_path: Path) -> None:
    metrics = bank_rows("metrics_monthly.csv")
    metrics[0]["balance"] = "1.00"
    folder = write_small_bank(tmp_path / "changed", rows={"metrics_monthly.csv": metrics[:50]})
    result = import_folder(loaded, folder)
    assert result.status == "loaded" and result.counts["metrics_monthly"] == 50
    snap = snapshot(loaded)
    assert snap["metrics_monthly"] == 50 and snap["imports"] == 2 and snap["branches"] == 7
    row = query(loaded, "SELECT balance FROM metrics_monthly WHERE month = '2026-08-01' AND product_code = 'SD001'"
                        " AND branch_code = 'S101'")
    assert str(row[0]["balance"]) == "1.00"
    # Going back to the first folder is a change too: it loads again.
    assert import_folder(loaded, write_small_bank(tmp_path / "orig")).status == "loaded"
    assert snapshot(loaded)["metrics_monthly"] == 96


def test_a_changed_document_alone_reloads(loaded: Database, tmp_path: Path) -> None:
    folder = write_small_bank(tmp_path / "b", files={"docs/faq/快贷常见问答.md": "问：新问题？\n答：新答案。\n"})
    assert import_folder(loaded, folder).status == "loaded"


def test_other_bank_without_replace_is_refused(loaded: Database, tmp_path: Path) -> None:
    before = snapshot(loaded)
    problems = fails_with(loaded, write_small_bank(tmp_path / "other", head_office="H900"))
    assert len(problems) == 1
    assert "--replace" in problems[0].message and "H000" in problems[0].message and "H900" in problems[0].message
    assert snapshot(loaded) == before


def test_other_bank_with_replace_swaps(loaded: Database, tmp_path: Path) -> None:
    from tools.alerts import run_alerts

    assert run_alerts(loaded)["fired"] > 0  # the first bank's alerts must not pass for the second's
    result = import_folder(loaded, write_small_bank(tmp_path / "other", head_office="H900"), replace=True)
    assert result.status == "loaded" and result.head_office == "H900"
    snap = snapshot(loaded)
    assert snap["head"] == [{"code": "H900"}] and snap["branches"] == 7 and snap["imports"] == 2
    assert query(loaded, "SELECT count(*) AS n FROM branch_closure WHERE ancestor = 'H000'")[0]["n"] == 0
    assert query(loaded, "SELECT count(*) AS n FROM branch_closure WHERE ancestor = 'H900'")[0]["n"] == 7
    assert query(loaded, "SELECT branch_code FROM users WHERE user_id = 'admin01'")[0]["branch_code"] == "H900"
    assert query(loaded, "SELECT replaced FROM imports ORDER BY id DESC LIMIT 1")[0]["replaced"] is True
    assert query(loaded, "SELECT count(*) AS n FROM alert_events")[0]["n"] == 0
    assert query(loaded, "SELECT count(*) AS n FROM metrics_rollup WHERE branch_code = 'H900'")[0]["n"] > 0


def test_unknown_extra_columns_warn_and_are_kept_in_extra(empty_db: Database, tmp_path: Path) -> None:
    products = bank_rows("products.csv")
    products[0]["risk_owner"] = "风险管理部"
    metrics = bank_rows("metrics_monthly.csv")
    metrics[0]["remark"] = "备注"
    folder = write_small_bank(tmp_path / "b", rows={"products.csv": products, "metrics_monthly.csv": metrics})
    result = import_folder(empty_db, folder)
    shown = [str(w) for w in result.warnings]
    assert "products.csv:1: risk_owner: 契约外的列，已保存到 extra 字段 (unknown column kept in extra)" in shown
    assert "metrics_monthly.csv:1: remark: 契约外的列，已忽略 (unknown column ignored)" in shown
    extras = {r["code"]: r["extra"] for r in query(empty_db, "SELECT code, extra FROM products")}
    assert extras["SD001"] == {"risk_owner": "风险管理部"} and extras["SD002"] == {}
    assert result.counts["metrics_monthly"] == 96


def test_bom_crlf_and_quoted_multiline_cells_load(empty_db: Database, tmp_path: Path) -> None:
    products = bank_rows("products.csv")
    products[1]["description"] = '第一行，含"引号"\n第二行'
    text = csv_text(products).replace("\n", "\r\n").replace('第一行，含""引号""\r\n第二行', '第一行，含""引号""\n第二行')
    folder = write_small_bank(tmp_path / "b", files={
        "products.csv": b"\xef\xbb\xbf" + text.encode("utf-8"),
        "branches.csv": b"\xef\xbb\xbf" + csv_text(bank_rows("branches.csv")).replace("\n", "\r\n").encode(),
    })
    result = import_folder(empty_db, folder)
    assert result.counts["products"] == 28 and result.counts["branches"] == 7
    row = query(empty_db, "SELECT description FROM products WHERE code = 'SD002'")[0]
    assert row["description"] == '第一行，含"引号"\n第二行'


def test_line_numbers_count_physical_lines(empty_db: Database, tmp_path: Path) -> None:
    products = bank_rows("products.csv")
    products[1]["description"] = "跨\n三\n行"  # the record on line 3 spans lines 3-5
    products[4]["level"] = "sellabel"  # record 5 starts on physical line 8
    problems = fails_with(empty_db, write_small_bank(tmp_path / "b", rows={"products.csv": products}))
    assert has(problems, "products.csv", 8, "level", "invalid enumeration")


def test_optional_files_may_be_absent(empty_db: Database, tmp_path: Path) -> None:
    optional = ["system_codes.csv", "customers.csv", "holdings.csv", "loans.csv", "ftp_curve.csv",
                "competitor_rates.csv", "alert_rules.yaml", "docs"]
    result = import_folder(empty_db, write_small_bank(tmp_path / "b", drop=optional))
    assert result.counts["loans"] == 0 and result.counts["documents"] == 0
    warned = {w.file for w in result.warnings}
    assert warned == {"system_codes.csv", "customers.csv", "holdings.csv", "loans.csv", "ftp_curve.csv",
                      "competitor_rates.csv", "alert_rules.yaml", "docs"}
    assert snapshot(empty_db)["bank_files"] == 0


def test_holdings_without_customers_file_skip_the_customer_check(empty_db: Database, tmp_path: Path) -> None:
    holdings = bank_rows("holdings.csv") + [{"month": "2026-10", "customer_id": "C9999", "product_code": "SD001",
                                             "balance": "1"}]
    result = import_folder(empty_db, write_small_bank(tmp_path / "b", rows={"holdings.csv": holdings},
                                                      drop=["customers.csv"]))
    assert result.counts["holdings"] == 37


# --- documents ----------------------------------------------------------------------------------


def test_documents_recorded_from_the_manifest(empty_db: Database, bank_dir: Path) -> None:
    import_folder(empty_db, bank_dir)
    docs = {d["path"]: d for d in query(empty_db, "SELECT * FROM documents")}
    manual = docs["manual/薪易快贷产品说明书.md"]
    assert manual["title"] == "薪易快贷产品说明书" and manual["doc_type"] == "manual" and manual["access"] == "public"
    assert manual["product_codes"] == ["SL001"] and str(manual["effective_date"]) == "2026-01-01"
    path = bank_dir / "docs" / "manual" / "薪易快贷产品说明书.md"
    assert manual["bytes"] == path.stat().st_size and manual["source_path"] == str(path.resolve())
    assert len(manual["sha256"]) == 64
    notice = docs["notice/存款利率调整通知.md"]  # no title, no access in the manifest
    assert notice["title"] == "存款利率调整通知" and notice["access"] == "internal"
    assert docs["faq/快贷常见问答.md"]["product_codes"] == ["SL001", "SL002"]


def test_document_type_from_sub_folder_without_manifest(empty_db: Database, tmp_path: Path) -> None:
    folder = write_small_bank(tmp_path / "b", drop=["docs/manifest.csv"],
                              files={"docs/misc/杂项说明.txt": "其他资料"})
    result = import_folder(empty_db, folder)
    types = {d["path"]: (d["doc_type"], d["access"], d["title"]) for d in query(empty_db, "SELECT * FROM documents")}
    assert types == {
        "manual/薪易快贷产品说明书.md": ("manual", "internal", "薪易快贷产品说明书"),
        "faq/快贷常见问答.md": ("faq", "internal", "快贷常见问答"),
        "compliance/信贷营销合规要点.md": ("compliance", "internal", "信贷营销合规要点"),
        "notice/存款利率调整通知.md": ("notice", "internal", "存款利率调整通知"),
        "misc/杂项说明.txt": ("other", "internal", "杂项说明"),
    }
    assert [str(w) for w in result.warnings] == ["docs/manifest.csv: 可选文件不存在 (optional file absent)"]


def test_bad_documents_are_skipped_with_a_warning(empty_db: Database, tmp_path: Path) -> None:
    folder = write_small_bank(tmp_path / "b", files={
        "docs/faq/空白.md": "  \n",
        "docs/manual/损坏.pdf": b"this is not a pdf",
        "docs/notice/新通知.md": "# 新通知\n内容",
        "docs/.DS_Store": b"\x00\x01",
    })
    result = import_folder(empty_db, folder)
    shown = [str(w) for w in result.warnings]
    assert "docs/faq/空白.md: 文档为空，已跳过 (empty document skipped)" in shown
    assert "docs/manual/损坏.pdf: 不是有效的 .pdf 文件，无法读取，已跳过 (unreadable document)" in shown
    assert "docs/notice/新通知.md: 文档不在 docs/manifest.csv 中，按所在文件夹确定类型 (document not in the manifest)" in shown
    paths = {d["path"]: d["doc_type"] for d in query(empty_db, "SELECT path, doc_type FROM documents")}
    assert len(paths) == 5 and paths["notice/新通知.md"] == "notice"
    assert "faq/空白.md" not in paths and "manual/损坏.pdf" not in paths
    assert result.counts["documents"] == 5


# --- bad input: each yields its file:line: column problem and loads nothing ------------------------

_METRIC = bank_rows("metrics_monthly.csv")[0]
_LOAN = bank_rows("loans.csv")[0]


def _products_with(index: int, **changes: str) -> dict[str, Any]:
    rows = bank_rows("products.csv")
    rows[index].update(changes)
    return {"rows": {"products.csv": rows}}


def _loans_with(index: int, **changes: str) -> dict[str, Any]:
    rows = bank_rows("loans.csv")
    rows[index].update(changes)
    return {"rows": {"loans.csv": rows}}


_PRODUCTS_TEXT = csv_text(bank_rows("products.csv"))

BAD_INPUTS: list[tuple[str, dict[str, Any], tuple[str, int | None, str | None, str]]] = [
    ("unbalanced quote", {"files": {"products.csv": _PRODUCTS_TEXT + 'SX01,"坏"名,sellable,deposit,retail,'
                                                                      'operating,零售金融部,,,,\n'}},
     ("products.csv", 30, None, "malformed CSV")),
    ("unclosed quote", {"files": {"products.csv": _PRODUCTS_TEXT + 'SX01,"未闭合,sellable\n'}},
     ("products.csv", 30, None, "malformed CSV")),
    ("wrong field count", {"files": {"products.csv": _PRODUCTS_TEXT + "SX02,少字段\n"}},
     ("products.csv", 30, None, "wrong number of fields: 2, header has 11")),
    ("not utf-8", {"files": {"products.csv": _PRODUCTS_TEXT.encode("gbk")}},
     ("products.csv", 2, None, "not valid UTF-8")),
    ("empty file", {"files": {"subjects.csv": ""}}, ("subjects.csv", 1, None, "empty file")),
    ("link to unknown product", {"extra_rows": {"product_links.csv": [{"from_code": "SD001", "to_code": "CX99"}]}},
     ("product_links.csv", 33, "to_code", "未知产品代码 'CX99' (unknown product code)")),
    ("link from unknown product", {"extra_rows": {"product_links.csv": [{"from_code": "ZZ1", "to_code": "CD01"}]}},
     ("product_links.csv", 33, "from_code", "unknown product code")),
    ("link skips a level", {"extra_rows": {"product_links.csv": [{"from_code": "SD001", "to_code": "BD01"}]}},
     ("product_links.csv", 33, "to_code",
      "链接跨越层级：SD001 是可售产品 (sellable)，BD01 是基础产品 (base)，应指向聚类产品 (cluster) (link skips a level)")),
    ("link goes up", {"extra_rows": {"product_links.csv": [{"from_code": "BD01", "to_code": "CD01"}]}},
     ("product_links.csv", 33, "to_code", "link must go one level down")),
    ("non-atomic to subject", {"extra_rows": {"product_links.csv": [{"from_code": "BD01", "to_code": "201101"}]}},
     ("product_links.csv", 33, "to_code", "only atomic products link to subjects")),
    ("atomic to product", {"extra_rows": {"product_links.csv": [{"from_code": "AD01", "to_code": "AD02"}]}},
     ("product_links.csv", 33, "to_code", "an atomic product links to a subject")),
    ("atomic to unknown subject", {"extra_rows": {"product_links.csv": [{"from_code": "AD01", "to_code": "999999"}]}},
     ("product_links.csv", 33, "to_code", "unknown subject code")),
    ("metric for non-sellable product", {"extra_rows": {"metrics_monthly.csv": [dict(_METRIC, product_code="CL01")]}},
     ("metrics_monthly.csv", 98, "product_code", "产品 CL01 是聚类产品 (cluster)，业务数据只能对应可售产品")),
    ("metric for unknown branch", {"extra_rows": {"metrics_monthly.csv": [dict(_METRIC, branch_code="S999")]}},
     ("metrics_monthly.csv", 98, "branch_code", "未知机构代码 'S999' (unknown branch code)")),
    ("loan for non-sellable product", _loans_with(2, product_code="BL01"),
     ("loans.csv", 4, "product_code", "row for a non-sellable product")),
    ("holding of unknown customer",
     {"extra_rows": {"holdings.csv": [{"month": "2026-10", "customer_id": "C9999", "product_code": "SD001",
                                       "balance": "1"}]}},
     ("holdings.csv", 38, "customer_id", "未知客户号 'C9999' (unknown customer id)")),
    ("customer in unknown branch", {"extra_rows": {"customers.csv": [
        {"customer_id": "C0100", "name": "某人", "segment": "retail", "branch_code": "X1"}]}},
     ("customers.csv", 10, "branch_code", "unknown branch code")),
    ("element of unknown product", {"extra_rows": {"product_elements.csv": [
        {"product_code": "ZZ9", "element": "fee", "value": "0"}]}},
     ("product_elements.csv", 33, "product_code", "unknown product code")),
    ("system code of unknown product", {"extra_rows": {"system_codes.csv": [
        {"system": "core", "source_code": "X1", "product_code": "ZZ9"}]}},
     ("system_codes.csv", 12, "product_code", "unknown product code")),
    ("duplicate product code", {"extra_rows": {"products.csv": [bank_rows("products.csv")[2]]}},
     ("products.csv", 30, "code", "重复的键 code=SL001，与第 4 行重复 (duplicate key)")),
    ("duplicate metric key", {"extra_rows": {"metrics_monthly.csv": [_METRIC]}},
     ("metrics_monthly.csv", 98, "month,product_code,branch_code",
      "month=2026-08, product_code=SD001, branch_code=S101，与第 2 行重复 (duplicate key)")),
    ("duplicate wecom id", {"extra_rows": {"users.csv": [
        {"user_id": "rm_x", "name": "某", "role": "rm", "branch_code": "S102", "wecom_userid": "zhangwei"}]}},
     ("users.csv", 9, "wecom_userid", "duplicate value")),
    ("non-numeric amount", _loans_with(0, amount="十万"), ("loans.csv", 2, "amount", "取值 '十万' 不是数字 (not a number)")),
    ("thousands separator", {"extra_rows": {"metrics_monthly.csv": [dict(_METRIC, month="2026-11",
                                                                         balance="1,000.00")]}},
     ("metrics_monthly.csv", 98, "balance", "not a number")),
    ("non-integer count", {"extra_rows": {"metrics_monthly.csv": [dict(_METRIC, month="2026-11", customers="3.5")]}},
     ("metrics_monthly.csv", 98, "customers", "not an integer")),
    ("integer out of range", _loans_with(1, overdue_days="99999999999"),
     ("loans.csv", 3, "overdue_days", "integer out of range")),
    ("bad enum", _products_with(15, level="sellabel"),
     ("products.csv", 17, "level", "取值 'sellabel' 不在 sellable|cluster|base|atomic 之中 (invalid enumeration)")),
    ("bad five_class", _loans_with(3, five_class="不良"),
     ("loans.csv", 5, "five_class", "取值 '不良' 不在 正常|关注|次级|可疑|损失 之中 (invalid enumeration)")),
    ("bad role", {"extra_rows": {"users.csv": [{"user_id": "x", "name": "x", "role": "boss", "branch_code": "H000"}]}},
     ("users.csv", 9, "role", "invalid enumeration")),
    ("bad date", _loans_with(4, start_date="2026/03/15"),
     ("loans.csv", 6, "start_date", "取值 '2026/03/15' 不是 YYYY-MM-DD 格式的日期 (invalid date)")),
    ("impossible date", _products_with(0, launch_date="2026-02-30"),
     ("products.csv", 2, "launch_date", "invalid date")),
    ("bad month", {"extra_rows": {"metrics_monthly.csv": [dict(_METRIC, month="2026-13")]}},
     ("metrics_monthly.csv", 98, "month", "取值 '2026-13' 不是 YYYY-MM 格式的月份 (invalid month)")),
    ("empty required value", _products_with(2, name=""), ("products.csv", 4, "name", "required value is empty")),
    ("missing required file", {"drop": ["products.csv"]}, ("products.csv", None, None, "required file missing")),
    ("missing required column", {"rows": {"products.csv": [
        {k: v for k, v in r.items() if k != "category"} for r in bank_rows("products.csv")]}},
     ("products.csv", 1, "category", "缺少必需的列 (missing required column)")),
    ("two head offices", {"extra_rows": {"branches.csv": [
        {"code": "H001", "name": "第二总行", "parent_code": "", "level": "head"}]}},
     ("branches.csv", 9, "level", "more than one head office")),
    ("no head office", {"rows": {"branches.csv": [dict(r, level="branch") if r["code"] == "H000" else r
                                                  for r in bank_rows("branches.csv")]}},
     ("branches.csv", None, "level", "no head office")),
    ("unknown parent branch", {"extra_rows": {"branches.csv": [
        {"code": "S301", "name": "某支行", "parent_code": "B300", "level": "sub_branch"}]}},
     ("branches.csv", 9, "parent_code", "unknown parent branch")),
    ("child level not below parent", {"extra_rows": {"branches.csv": [
        {"code": "B300", "name": "某分行", "parent_code": "S101", "level": "branch"}]}},
     ("branches.csv", 9, "level", "a child's level must be below its parent's")),
    ("branch cycle", {"extra_rows": {"branches.csv": [
        {"code": "S900", "name": "甲", "parent_code": "S901", "level": "sub_branch"},
        {"code": "S901", "name": "乙", "parent_code": "S900", "level": "sub_branch"}]}},
     ("branches.csv", 9, "parent_code", "上级关系成环：S900 → S901 → S900 (cycle in the branch tree)")),
    ("unknown branch for a user", {"extra_rows": {"users.csv": [
        {"user_id": "rm_x", "name": "某某", "role": "rm", "branch_code": "S999"}]}},
     ("users.csv", 9, "branch_code", "未知机构代码 'S999' (unknown branch code)")),
    ("malformed alert_rules.yaml", {"files": {"alert_rules.yaml": "rules:\n  npl_watch: [1, 2\n  x: y\n"}},
     ("alert_rules.yaml", 3, None, "malformed YAML")),
    ("alert_rules.yaml not a mapping", {"files": {"alert_rules.yaml": "只是一句话\n"}},
     ("alert_rules.yaml", None, None, "must be a mapping or a list")),
    ("manifest path missing", {"extra_rows": {"docs/manifest.csv": [{"path": "faq/不存在.md", "doc_type": "faq"}]}},
     ("docs/manifest.csv", 6, "path", "文件 docs/faq/不存在.md 不存在 (manifest path does not exist)")),
    ("manifest path outside docs", {"extra_rows": {"docs/manifest.csv": [{"path": "../products.csv"}]}},
     ("docs/manifest.csv", 6, "path", "path outside docs/")),
    ("manifest unknown product", {"extra_rows": {"docs/manifest.csv": [
        {"path": "faq/快贷常见问答.md", "product_codes": "SL001|ZZ99"}]}},
     ("docs/manifest.csv", 6, "product_codes", "未知产品代码 'ZZ99'")),
    ("manifest bad doc_type", {"rows": {"docs/manifest.csv": [dict(r, doc_type="guide") if i == 0 else r
                                                              for i, r in enumerate(bank_rows("docs/manifest.csv"))]}},
     ("docs/manifest.csv", 2, "doc_type", "invalid enumeration")),
]


@pytest.mark.parametrize(("changes", "expected"), [(c, e) for _, c, e in BAD_INPUTS], ids=[n for n, _, _ in BAD_INPUTS])
def test_bad_input_is_reported_and_nothing_loads(
    loaded: Database, tmp_path: Path, changes: dict[str, Any], expected: tuple[str, int | None, str | None, str]
) -> None:
    before = snapshot(loaded)
    folder = write_small_bank(tmp_path / "bad", **changes)
    problems = fails_with(loaded, folder)
    assert has(problems, *expected), "\n".join(map(str, problems))
    assert snapshot(loaded) == before


def test_the_brief_example_message_is_exact(tmp_path: Path) -> None:
    _, errors, _ = validate_folder(write_small_bank(tmp_path / "b", **_products_with(15, level="sellabel")))
    assert [str(e) for e in errors] == [
        "products.csv:17: level: 取值 'sellabel' 不在 sellable|cluster|base|atomic 之中 (invalid enumeration)"
    ]


def test_every_problem_in_a_folder_is_reported(loaded: Database, tmp_path: Path) -> None:
    before = snapshot(loaded)
    products = bank_rows("products.csv")
    products[15]["level"] = "sellabel"
    loans = bank_rows("loans.csv")
    loans[0]["amount"] = "十万"
    loans[1]["start_date"] = "2026/13/01"
    folder = write_small_bank(
        tmp_path / "bad",
        rows={"products.csv": products, "loans.csv": loans},
        extra_rows={
            "product_links.csv": [{"from_code": "SD001", "to_code": "CX99"}, {"from_code": "SD001", "to_code": "BD01"}],
            "metrics_monthly.csv": [dict(_METRIC, product_code="CL01"), dict(_METRIC, month="2026-13")],
            "users.csv": [{"user_id": "rm_x", "name": "某某", "role": "rm", "branch_code": "S999"}],
            "branches.csv": [{"code": "H001", "name": "第二总行", "parent_code": "", "level": "head"}],
        },
        files={"alert_rules.yaml": "rules: [\n"},
        drop=["subjects.csv"],
    )
    problems = fails_with(loaded, folder)
    expected = [
        ("subjects.csv", None, None, "required file missing"),
        ("products.csv", 17, "level", "invalid enumeration"),
        ("loans.csv", 2, "amount", "not a number"),
        ("loans.csv", 3, "start_date", "invalid date"),
        ("metrics_monthly.csv", 98, "product_code", "non-sellable"),
        ("metrics_monthly.csv", 99, "month", "invalid month"),
        ("users.csv", 9, "branch_code", "unknown branch code"),
        ("branches.csv", 9, "level", "more than one head office"),
        ("alert_rules.yaml", 2, None, "malformed YAML"),
    ]
    for e in expected:
        assert has(problems, *e), f"{e} not in:\n" + "\n".join(map(str, problems))
    assert snapshot(loaded) == before


def test_many_bad_rows_are_counted_not_listed(tmp_path: Path) -> None:
    metrics = bank_rows("metrics_monthly.csv") + [dict(r, month="2025" + r["month"][4:])
                                                   for r in bank_rows("metrics_monthly.csv")]
    for row in metrics:
        row["balance"] = "n/a"
    _, errors, _ = validate_folder(write_small_bank(tmp_path / "b", rows={"metrics_monthly.csv": metrics}))
    assert len(errors) == importer.MAX_SAME_PROBLEMS + 1
    assert errors[0].line == 2 and errors[-2].line == importer.MAX_SAME_PROBLEMS + 1
    assert str(errors[-1]) == ("metrics_monthly.csv: balance: ……另有 92 行同类问题未逐一列出 "
                               "(92 more rows with the same problem: number)")


def test_missing_folder_and_file_instead_of_folder(empty_db: Database, tmp_path: Path) -> None:
    problems = fails_with(empty_db, tmp_path / "nowhere")
    assert [p.message for p in problems] == ["目录不存在 (folder does not exist)"]
    (tmp_path / "file.csv").write_text("x")
    assert "not a folder" in fails_with(empty_db, tmp_path / "file.csv")[0].message
    assert snapshot(empty_db)["imports"] == 0


def test_problem_formats_as_file_line_column_message() -> None:
    assert str(Problem("a.csv", 3, "code", "坏 (bad)")) == "a.csv:3: code: 坏 (bad)"
    assert str(Problem("a.csv", None, None, "缺少 (missing)")) == "a.csv: 缺少 (missing)"
    assert str(Problem("a.csv", 1, None, "空 (empty)")) == "a.csv:1: 空 (empty)"


def test_sellable_without_path_to_a_subject_is_a_warning(empty_db: Database, tmp_path: Path) -> None:
    links = [r for r in bank_rows("product_links.csv") if r["from_code"] != "SM001"]
    result = import_folder(empty_db, write_small_bank(tmp_path / "b", rows={"product_links.csv": links}))
    assert [str(w) for w in result.warnings] == [
        "products.csv:10: code: 可售产品 SM001 没有向下穿透到核算科目的路径 (no path down to a subject)"
    ]


# --- all or nothing -------------------------------------------------------------------------------


def test_failure_mid_load_rolls_back_everything(loaded: Database, tmp_path: Path) -> None:
    before = snapshot(loaded)
    metrics = bank_rows("metrics_monthly.csv")[:10]
    folder = write_small_bank(tmp_path / "changed", rows={"metrics_monthly.csv": metrics})

    def explode(message: str) -> None:
        if message.startswith("加载 holdings"):  # metrics and eight other tables are written by now
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        import_folder(loaded, folder, progress=explode)
    assert snapshot(loaded) == before


def test_database_error_mid_load_is_reported_and_rolled_back(
    loaded: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(loaded)
    real_copy = importer._copy_table

    def copy_then_fail(cur: Any, pt: importer.ParsedTable, bank: importer.ParsedBank) -> int:
        n = real_copy(cur, pt, bank)
        if pt.spec.name == "loans.csv":
            cur.execute("SELECT 1 / 0")
        return n

    monkeypatch.setattr(importer, "_copy_table", copy_then_fail)
    folder = write_small_bank(tmp_path / "changed", drop=["ftp_curve.csv"])
    problems = fails_with(loaded, folder)
    assert len(problems) == 1 and problems[0].file == "loans.csv"
    assert "rolled back" in problems[0].message
    assert snapshot(loaded) == before
