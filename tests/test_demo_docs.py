"""The demo bank's documents (`ingest.demo_docs.write_documents`): formats, manifest, determinism."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import time
from pathlib import Path
from typing import Any

import pytest

from ingest.demo_docs import INJECTION_TEXT, write_documents


def _p(code: str, name: str, category: str, segment: str, status: str = "operating", aliases: str = "",
       launch: str = "2022-01-01", retire: str = "", description: str = "") -> dict[str, Any]:
    return {
        "code": code, "name": name, "level": "sellable", "category": category, "segment": segment,
        "status": status, "owner_dept": "零售金融部" if segment == "retail" else "公司金融部",
        "launch_date": launch, "retire_date": retire, "aliases": aliases, "description": description,
    }


PRODUCTS = [
    _p("SL101", "尊享贷", "loan", "retail", aliases="尊享消费贷|尊享", description="面向优质客户的个人信用消费贷款。"),
    _p("SL102", "薪易快贷", "loan", "retail", aliases="快贷", description="代发工资客户线上信用贷款。"),
    _p("SL103", "税e贷", "loan", "inclusive", aliases="税易贷", description="依据纳税记录发放的小微经营贷款。"),
    _p("SL104", "抵押经营贷", "loan", "inclusive", status="suspended", aliases="房抵贷"),
    _p("SL105", "惠企e贷", "loan", "inclusive", launch="2025-03-01", description="新一代线上普惠经营贷款。"),
    _p("SL106", "老经营贷", "loan", "inclusive", launch="2016-05-01"),
    _p("SL107", "旧信用贷", "loan", "retail", status="retired", launch="2015-01-01", retire="2023-12-31"),
    _p("SD101", "安心存定期", "deposit", "retail", aliases="安心存"),
    _p("SD102", "薪金活期宝", "deposit", "retail"),
    _p("SD103", "单位通知存款", "deposit", "corporate"),
    _p("SP101", "聚合收款码", "payment", "corporate", aliases="收款码"),
    _p("SI101", "稳盈理财30天", "intermediary", "retail", description="固定收益类理财产品。"),
    _p("SI102", "代发工资服务", "intermediary", "corporate"),
    _p("SM101", "同业存单通", "market", "interbank"),
]
ELEMENTS = {
    "SL101": {"rate_min": "3.45%", "rate_max": "6.80%", "term_min_months": "6月", "term_max_months": "60月",
              "amount_min": "50000元", "amount_max": "500000元", "repayment": "等额本息、先息后本",
              "early_repayment": "满6个月后可申请，需提前3个工作日预约，收取剩余本金1%违约金"},
    "SL102": {"rate_min": "3.80%", "rate_max": "9.00%", "term_max_months": "36月"},
    "SD101": {"rate_min": "1.10%", "rate_max": "1.95%", "term_min_months": "3月", "term_max_months": "60月",
              "min_amount": "50元"},
    "SI101": {"risk_level": "R2", "min_amount": "10000元", "rate_min": "2.60%", "rate_max": "3.20%"},
}
PLANTED = {
    "npl_suspend": ["SL104"], "npl_watch": ["SL103"], "overdue_jump": ["SL102"], "deposit_drain": ["SD102"],
    "loss_making": ["SP101"], "substitution_new": ["SL105"], "substitution_old": ["SL106"],
    "npl_branch": ["B200"], "zunxiang": ["SL101"],
}
FORMATS = {".md", ".txt", ".html", ".docx", ".pdf", ".xlsx", ".csv"}


def _write(root: Path) -> tuple[list[dict[str, str]], float]:
    start = time.perf_counter()
    rows = write_documents(root, PRODUCTS, ELEMENTS, PLANTED, seed=7)
    return rows, time.perf_counter() - start


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _text(path: Path) -> str:
    """Plain text of any generated document (enough to search for a phrase)."""
    suffix = path.suffix
    if suffix == ".docx":
        import docx

        d = docx.Document(str(path))
        parts = [p.text for p in d.paragraphs]
        parts += [c.text for t in d.tables for row in t.rows for c in row.cells]
        return "\n".join(parts)
    if suffix == ".xlsx":
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True)
        return "\n".join(str(v) for ws in wb.worksheets for row in ws.iter_rows(values_only=True) for v in row if v)
    if suffix == ".pdf":
        if importlib.util.find_spec("pdfminer") is None:
            return ""
        from pdfminer.high_level import extract_text

        return str(extract_text(str(path)))
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]], float]:
    root = tmp_path_factory.mktemp("demo") / "docs"
    rows, seconds = _write(root)
    return root, rows, seconds


def test_deterministic(generated: tuple[Path, list[dict[str, str]], float], tmp_path: Path) -> None:
    root, rows, _ = generated
    again, _ = _write(tmp_path / "docs")
    assert again == rows
    assert _digest(tmp_path / "docs") == _digest(root)


def test_fast(generated: tuple[Path, list[dict[str, str]], float]) -> None:
    assert generated[2] < 3.0


def test_manifest_and_formats(generated: tuple[Path, list[dict[str, str]], float]) -> None:
    root, rows, _ = generated
    assert 40 <= len(rows) <= 70
    paths = [r["path"] for r in rows]
    assert len(set(paths)) == len(paths)
    assert {Path(p).suffix for p in paths} == FORMATS
    on_disk = {str(p.relative_to(root)).replace("\\", "/") for p in root.rglob("*") if p.is_file()}
    assert on_disk == set(paths)
    codes = {p["code"] for p in PRODUCTS}
    for r in rows:
        assert set(r) == {"path", "title", "doc_type", "product_codes", "access", "effective_date"}
        assert r["doc_type"] in {"manual", "faq", "compliance", "notice", "other"}
        assert r["access"] in {"public", "internal", "restricted"}
        assert r["path"].split("/")[0] == r["doc_type"]
        assert (root / r["path"]).stat().st_size > 200
        assert all(c in codes for c in r["product_codes"].split("|") if c)
        assert r["effective_date"] == "" or len(r["effective_date"]) == 10
    access = [r["access"] for r in rows]
    assert access.count("restricted") >= 3 and "public" in access and "internal" in access
    types = {r["doc_type"] for r in rows}
    assert {"manual", "faq", "compliance", "notice"} <= types


def test_injection_paragraph_in_exactly_one_document(generated: tuple[Path, list[dict[str, str]], float]) -> None:
    root, rows, _ = generated
    hits = [r["path"] for r in rows if INJECTION_TEXT in _text(root / r["path"])]
    assert len(hits) == 1 and hits[0].startswith("notice/")
    lines = (root / hits[0]).read_text(encoding="utf-8").splitlines()
    assert INJECTION_TEXT in lines  # an ordinary paragraph of its own
    assert next(r for r in rows if r["path"] == hits[0])["access"] != "restricted"


def test_office_files_readable(generated: tuple[Path, list[dict[str, str]], float]) -> None:
    import docx
    import openpyxl

    root, rows, _ = generated
    with_heading_and_table = 0
    for r in rows:
        path = root / r["path"]
        if path.suffix == ".docx":
            d = docx.Document(str(path))
            assert d.core_properties.title == r["title"]
            headings = [p for p in d.paragraphs if p.style is not None and p.style.name.startswith("Heading")]
            if headings and d.tables:
                with_heading_and_table += 1
        elif path.suffix == ".xlsx":
            wb = openpyxl.load_workbook(path)
            ws = wb.worksheets[0]
            assert ws.max_row > 2 and ws.cell(1, 1).value
    assert with_heading_and_table >= 2


def test_faq_pairs(generated: tuple[Path, list[dict[str, str]], float]) -> None:
    root, rows, _ = generated
    faqs = [r for r in rows if r["doc_type"] == "faq"]
    pairs = 0
    has_q_colon = has_table = False
    for r in faqs:
        path = root / r["path"]
        text = _text(path)
        pairs += text.count("问：")
        has_q_colon |= "\nQ: " in text and "\nA: " in text
        if path.suffix == ".csv":
            table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
            assert table[0] == ["问题", "答案"] and len(table) > 5
            has_table = True
    assert pairs >= 15 and has_q_colon and has_table


def test_pdf_has_chinese_text(generated: tuple[Path, list[dict[str, str]], float]) -> None:
    root, rows, _ = generated
    pdfs = [root / r["path"] for r in rows if r["path"].endswith(".pdf")]
    assert pdfs
    for path in pdfs:
        assert path.read_bytes().startswith(b"%PDF")
    if importlib.util.find_spec("pdfminer") is None:
        pytest.skip("pdfminer not installed")
    longest = max(pdfs, key=lambda p: p.stat().st_size)
    text = _text(longest)
    assert "尊享贷" in text and "提前还款" in text
    assert "第 2 页" in text  # multi-page


def test_zunxiang_manual_states_early_repayment(generated: tuple[Path, list[dict[str, str]], float]) -> None:
    root, rows, _ = generated
    manuals = [r for r in rows if r["doc_type"] == "manual" and r["product_codes"] == "SL101"]
    assert len(manuals) == 1
    text = _text(root / manuals[0]["path"])
    assert "尊享贷" in text and "SL101" in text and "提前还款" in text
    assert ELEMENTS["SL101"]["early_repayment"] in text


def test_planted_scenarios_documented(generated: tuple[Path, list[dict[str, str]], float]) -> None:
    root, rows, _ = generated
    restricted = [r for r in rows if r["access"] == "restricted"]
    assert any("SL104" in r["product_codes"].split("|") and "B200" in _text(root / r["path"]) for r in restricted)
    notices = {r["path"]: r for r in rows if r["doc_type"] == "notice"}
    assert any("暂停" in p and "SL104" in r["product_codes"] for p, r in notices.items())
    assert any("上线" in p and "SL105" in r["product_codes"] for p, r in notices.items())
    manual_codes = {c for r in rows if r["doc_type"] == "manual" for c in r["product_codes"].split("|")}
    assert {"SL101", "SL105", "SL106", "SI101"} <= manual_codes
    text = "\n".join(_text(root / r["path"]) for r in rows if r["path"].startswith("compliance/"))
    assert "录音录像" in text and "适当性" in text and "三查" in text and "存款保险" in text


def test_no_catalogue_names_hard_coded(tmp_path: Path) -> None:
    """Other product names flow through; a catalogue without some categories still works."""
    renamed = [dict(p, name=f"测试{p['code']}") for p in PRODUCTS if p["category"] in ("loan", "deposit")]
    rows = write_documents(tmp_path / "docs", renamed, {}, {"zunxiang": ["SL101"]}, seed=1)
    assert rows
    text = "\n".join(_text(tmp_path / "docs" / r["path"]) for r in rows if not r["path"].endswith(".pdf"))
    assert "测试SL101" in text and "薪易快贷" not in text


def test_as_of_and_branch_names(tmp_path: Path) -> None:
    rows = write_documents(tmp_path / "docs", PRODUCTS, ELEMENTS, PLANTED, seed=7, as_of="2025-10-31",
                           branch_names={"B200": "济南分行"})
    launches = {p["launch_date"] for p in PRODUCTS} | {p["retire_date"] for p in PRODUCTS}
    for r in rows:
        assert r["effective_date"] <= "2025-10-31" or r["effective_date"] in launches
    report = next(r for r in rows if r["access"] == "restricted" and r["path"].startswith("notice/"))
    assert "济南分行（机构号B200）" in _text(tmp_path / "docs" / report["path"])
