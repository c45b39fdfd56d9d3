"""Document loading and chunking: every format, Chinese structure, FAQs, laws, errors, offline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ingest.chunking import Chunk, chunk_blocks, sentences, split_text
from ingest.documents import Block, DocumentError, clean_text, load_document

REGULATIONS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "regulations"
BANKING_LAW = REGULATIONS / "商业银行法(2015-08-29).md"

LONG_PARAGRAPH = (
    "尊享贷是本行面向优质客户推出的个人信用贷款产品，无需抵押担保。"
    "客户可通过手机银行、网上银行或营业网点提交申请！"
    "贷款额度根据客户的资信状况综合核定，最高不超过五十万元；"
    "贷款期限最长三年，可选择等额本息或先息后本的还款方式。"
    "审批通过后资金实时发放至客户本人的借记卡账户？"
) * 12  # ~ 1,400 characters, one paragraph

PDF_PARAGRAPH = (
    "尊享贷是本行面向优质客户推出的个人信用贷款产品，无需抵押担保，额度最高五十万元，期限最长三年。"
    "客户可以通过手机银行在线申请，审批通过后资金实时到账，按日计息，随借随还。"
)


# ------------------------------------------------------------------------------------------------
# Building the test documents
# ------------------------------------------------------------------------------------------------


def write_md(folder: Path) -> Path:
    path = folder / "尊享贷产品说明书.md"
    path.write_text(textwrap.dedent("""\
        # 尊享贷产品说明书

        ## 产品概述

        尊享贷是面向优质客户的个人信用贷款。
        额度最高五十万元。

        ## 费用标准

        | 项目 | 费率 | 说明 |
        |---|---|---|
        | 手续费 | 0.5% | 一次性收取 |
        | 提前还款违约金 | 1% | 按提前还款本金计 |

        ### 提前还款

        """) + LONG_PARAGRAPH + "\n", encoding="utf-8")
    return path


def write_txt(folder: Path) -> Path:
    path = folder / "合规要点.txt"
    # GB18030 on purpose: many Chinese office files are not UTF-8.
    path.write_bytes(textwrap.dedent("""\
        个人贷款合规要点

        第一章 总则
        一、适用范围
        本要点适用于本行全部个人贷款产品的营销、受理、审批和贷后管理，各分支机构应当
        严格遵照执行，不得擅自变通。

        二、禁止行为
        （一）不得向未成年人发放贷款；
        （二）不得捆绑销售保险产品。
        1.1 特别说明
        客户经理不得代客户签字。
        """).encode("gb18030"))
    return path


def write_html(folder: Path) -> Path:
    path = folder / "通知.html"
    path.write_text(textwrap.dedent("""\
        <html><head><meta charset="utf-8"><title>通知</title><style>p {color: red}</style></head>
        <body>
        <h1>关于调整尊享贷利率的通知</h1>
        <p>各分支机构：自2025年1月1日起，尊享贷利率调整如下。</p>
        <h2>调整后利率</h2>
        <table>
          <tr><th>期限</th><th>年化利率</th></tr>
          <tr><td>1年</td><td>3.45%</td></tr>
          <tr><td>3年</td><td>3.85%</td></tr>
        </table>
        <h2>执行要求</h2>
        <p>请各行做好客户解释工作。</p>
        <table>
          <tr><th>客户类型</th><th>期限</th><th>利率</th></tr>
          <tr><td rowspan="2">优质客户</td><td>1年</td><td>3.25%</td></tr>
          <tr><td>3年</td><td>3.65%</td></tr>
        </table>
        </body></html>
        """), encoding="utf-8")
    return path


def write_docx(folder: Path) -> Path:
    import docx

    path = folder / "操作手册.docx"
    d = docx.Document()
    d.add_heading("尊享贷操作手册", level=1)
    d.add_heading("申请流程", level=2)
    d.add_paragraph("客户登录手机银行，进入贷款频道，选择尊享贷并填写申请信息。")
    d.add_paragraph("年满18周岁", style="List Bullet")
    d.add_heading("审批材料", level=2)
    table = d.add_table(rows=3, cols=2)
    for r, row in enumerate([("材料", "要求"), ("身份证", "原件"), ("收入证明", "近六个月")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    d.add_heading("常见问题", level=2)
    d.add_paragraph("问：审批需要多久？")
    d.add_paragraph("答：一般一个工作日内完成。")
    d.save(str(path))
    return path


def write_xlsx(folder: Path) -> Path:
    import openpyxl

    path = folder / "常见问答.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "尊享贷问答"
    ws.append(["问题", "答案", "分类"])
    ws.append(["如何提前还款？", "登录手机银行，在我的贷款中申请提前还款。", "还款"])
    ws.append(["利率是多少？", "年化利率3.45%起，以审批结果为准。", "利率"])
    ws.append(["可以线下办理吗？", "可以，请携带身份证到任一网点办理。", "渠道"])
    wb.save(str(path))
    return path


def write_csv(folder: Path) -> Path:
    path = folder / "网点.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["网点", "地址", "营业时间"])
        w.writerow(["营业部", "人民路1号", "9:00-17:00"])
        w.writerow(["城东支行", "建设路88号", "9:00-16:30"])
    return path


def write_pdf(folder: Path) -> Path:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    h1 = ParagraphStyle("h1", fontName="STSong-Light", fontSize=20, leading=26)
    h2 = ParagraphStyle("h2", fontName="STSong-Light", fontSize=15, leading=20)
    body = ParagraphStyle("body", fontName="STSong-Light", fontSize=10.5, leading=16,
                          firstLineIndent=21, wordWrap="CJK")
    table = Table([["项目", "费率"], ["手续费", "0.5%"], ["提前还款违约金", "1%"]])
    table.setStyle(TableStyle([("FONTNAME", (0, 0), (-1, -1), "STSong-Light"),
                               ("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
    story = [
        Paragraph("尊享贷产品说明书", h1),
        Paragraph("一、产品概述", h2),
        Paragraph(PDF_PARAGRAPH, body),
        Paragraph("二、费用标准", body),  # a numbered heading in body type
        table,
        PageBreak(),
        Paragraph("三、提前还款", h2),
        Paragraph("客户可随时申请提前还款，无需支付额外费用。", body),
    ]

    def footer(canvas, doc):  # noqa: ANN001 - reportlab's callback signature
        canvas.setFont("STSong-Light", 9)
        canvas.drawString(280, 30, f"- {doc.page} -")

    path = folder / "产品说明书.pdf"
    SimpleDocTemplate(str(path), pagesize=A4).build(story, onFirstPage=footer, onLaterPages=footer)
    return path


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("docs")
    return {
        "md": write_md(folder), "txt": write_txt(folder), "html": write_html(folder),
        "docx": write_docx(folder), "xlsx": write_xlsx(folder), "csv": write_csv(folder),
        "pdf": write_pdf(folder),
    }


def headings(blocks: list[Block]) -> list[tuple[int, str]]:
    return [(b.level, b.text) for b in blocks if b.kind == "heading"]


def tables(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.kind == "table"]


# ------------------------------------------------------------------------------------------------
# Loading: headings, tables, pages in every format
# ------------------------------------------------------------------------------------------------


def test_markdown_headings_table_and_lines(docs: dict[str, Path]) -> None:
    blocks = load_document(docs["md"])
    assert headings(blocks) == [(1, "尊享贷产品说明书"), (2, "产品概述"), (2, "费用标准"), (3, "提前还款")]
    [table] = tables(blocks)
    assert table.rows == [["项目", "费率", "说明"], ["手续费", "0.5%", "一次性收取"],
                          ["提前还款违约金", "1%", "按提前还款本金计"]]
    assert table.text.splitlines()[0] == "项目 | 费率 | 说明"
    texts = [b.text for b in blocks if b.kind == "text"]
    # two short lines are two paragraphs, not joined with a space
    assert "尊享贷是面向优质客户的个人信用贷款。" in texts and "额度最高五十万元。" in texts
    assert LONG_PARAGRAPH in texts


def test_txt_numbered_headings_wrapped_lines_and_encoding(docs: dict[str, Path]) -> None:
    blocks = load_document(docs["txt"])
    assert headings(blocks) == [
        (1, "个人贷款合规要点"), (2, "第一章 总则"), (3, "一、适用范围"), (3, "二、禁止行为"), (4, "1.1 特别说明"),
    ]
    texts = [b.text for b in blocks if b.kind in ("text", "list")]
    # a line broken mid-sentence is joined without a space
    assert "本要点适用于本行全部个人贷款产品的营销、受理、审批和贷后管理，各分支机构应当严格遵照执行，不得擅自变通。" in texts
    assert "（一）不得向未成年人发放贷款；" in texts  # an item ending in ；is not a heading


def test_html_headings_and_table(docs: dict[str, Path]) -> None:
    blocks = load_document(docs["html"])
    assert headings(blocks) == [(1, "关于调整尊享贷利率的通知"), (2, "调整后利率"), (2, "执行要求")]
    table, spanned = tables(blocks)
    assert table.rows == [["期限", "年化利率"], ["1年", "3.45%"], ["3年", "3.85%"]]
    # a merged cell is repeated on every row it covers, so each row reads on its own
    assert spanned.rows == [["客户类型", "期限", "利率"], ["优质客户", "1年", "3.25%"], ["优质客户", "3年", "3.65%"]]
    assert not any("color" in b.text for b in blocks)  # no <style> text


def test_docx_heading_styles_table_and_list(docs: dict[str, Path]) -> None:
    blocks = load_document(docs["docx"])
    assert headings(blocks) == [(1, "尊享贷操作手册"), (2, "申请流程"), (2, "审批材料"), (2, "常见问题")]
    [table] = tables(blocks)
    assert table.rows == [["材料", "要求"], ["身份证", "原件"], ["收入证明", "近六个月"]]
    assert any(b.kind == "list" and b.text == "年满18周岁" for b in blocks)
    assert any(b.kind == "qa" and "审批需要多久" in b.text and "一个工作日" in b.text for b in blocks)


def test_xlsx_sheet_and_question_table(docs: dict[str, Path]) -> None:
    blocks = load_document(docs["xlsx"])
    assert headings(blocks) == [(1, "尊享贷问答")]
    [table] = tables(blocks)
    assert table.rows is not None and table.rows[0] == ["问题", "答案", "分类"] and len(table.rows) == 4


def test_csv_table(docs: dict[str, Path]) -> None:
    [table] = load_document(docs["csv"])
    assert table.kind == "table"
    assert table.rows == [["网点", "地址", "营业时间"], ["营业部", "人民路1号", "9:00-17:00"],
                          ["城东支行", "建设路88号", "9:00-16:30"]]


def test_pdf_headings_pages_tables_and_joined_lines(docs: dict[str, Path]) -> None:
    blocks = load_document(docs["pdf"])
    assert [(b.level, b.text, b.page) for b in blocks if b.kind == "heading"] == [
        (1, "尊享贷产品说明书", 1), (2, "一、产品概述", 1), (2, "二、费用标准", 1), (2, "三、提前还款", 2),
    ]
    texts = {b.text: b.page for b in blocks if b.kind == "text"}
    assert texts[PDF_PARAGRAPH] == 1  # wrapped over several lines, joined with no spaces
    assert texts["客户可随时申请提前还款，无需支付额外费用。"] == 2
    [table] = tables(blocks)
    assert table.rows == [["项目", "费率"], ["手续费", "0.5%"], ["提前还款违约金", "1%"]]
    assert table.page == 1
    assert not any(b.text.strip("- ").isdigit() for b in blocks)  # page-number footers dropped


def test_clean_text_keeps_chinese_punctuation() -> None:
    assert clean_text("年化利率：３．４５％（以审批为准）\x00\u200b\u3000！") == "年化利率：3．45％（以审批为准）！"
    assert clean_text("第一行\r\n\r\n\r\n\r\n第二行") == "第一行\n\n第二行"


# ------------------------------------------------------------------------------------------------
# Chunking
# ------------------------------------------------------------------------------------------------


def test_text_chunks_follow_headings_and_split_long_paragraphs(docs: dict[str, Path]) -> None:
    chunks = chunk_blocks(load_document(docs["md"]), "尊享贷产品说明书", "manual", max_chars=300, overlap=60)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    overview = chunks[0]
    assert overview.heading_path == ["尊享贷产品说明书", "产品概述"]
    assert overview.text == "尊享贷是面向优质客户的个人信用贷款。\n额度最高五十万元。"
    assert overview.kind == "text"
    long = [c for c in chunks if c.heading_path == ["尊享贷产品说明书", "费用标准", "提前还款"]]
    assert len(long) >= 5
    for c in long:
        assert len(c.text) <= 300
        assert c.text[-1] in "。！？；"  # cut at sentence ends
    for prev, nxt in zip(long, long[1:], strict=False):  # a small overlap, whole sentences or clauses
        shared = next(k for k in range(min(len(prev.text), 60), -1, -1) if prev.text.endswith(nxt.text[:k]))
        assert 0 < shared <= 60
    # every sentence of the paragraph survives
    joined = "".join(c.text for c in long)
    assert all(s in joined for s in sentences(LONG_PARAGRAPH))


def test_table_chunk_is_whole_with_header(docs: dict[str, Path]) -> None:
    for fmt, title in (("md", "说明书"), ("html", "通知"), ("docx", "手册"), ("pdf", "说明书"), ("csv", "网点")):
        blocks = load_document(docs[fmt])
        table_chunks = [c for c in chunk_blocks(blocks, title, "manual") if c.kind == "table"]
        assert [c.text for c in table_chunks] == [b.text for b in tables(blocks)], fmt
    html_table = next(c for c in chunk_blocks(load_document(docs["html"]), "通知", "notice") if c.kind == "table")
    assert html_table.text == "期限 | 年化利率\n1年 | 3.45%\n3年 | 3.85%"
    assert html_table.heading_path == ["通知", "关于调整尊享贷利率的通知", "调整后利率"]


def test_large_table_split_by_rows_repeating_header() -> None:
    rows = [["产品", "期限", "利率"]] + [[f"产品{i:03d}", f"{i}个月", f"{3 + i / 100:.2f}%"] for i in range(60)]
    block = Block("table", "\n".join(" | ".join(r) for r in rows), rows=rows)
    chunks = chunk_blocks([block], "利率表", "manual", max_chars=200, overlap=20)
    assert len(chunks) > 1
    seen: list[str] = []
    for c in chunks:
        lines = c.text.split("\n")
        assert lines[0] == "产品 | 期限 | 利率" and c.kind == "table"
        assert len(c.text) <= 200
        seen.extend(lines[1:])
    assert seen == [" | ".join(r) for r in rows[1:]]  # every row once, in order, never cut


def faq_chunks(chunks: list[Chunk]) -> list[str]:
    return [c.text for c in chunks if c.kind == "faq"]


def test_faq_pairs_in_every_form(tmp_path: Path) -> None:
    md = tmp_path / "faq.md"
    md.write_text(textwrap.dedent("""\
        # 尊享贷常见问题

        问：如何申请尊享贷？
        答：登录手机银行，在贷款频道申请。

        问:申请需要什么材料?
        答:身份证和收入证明。

        Q: 可以提前还款吗？
        A: 可以，提前三天预约。

        Q：逾期会怎样？ A：会产生罚息并影响征信。

        1. 问：额度有效期多久？
           答：额度有效期一年。

        2. 问：利率怎么计算？
        答：按日计息。
        年化利率3.45%起。

        ## 放款后多久到账？

        审批通过后实时到账。

        ## 能否修改还款日？

        不支持修改还款日。
        """), encoding="utf-8")
    chunks = chunk_blocks(load_document(md), "尊享贷常见问题", "faq")
    expected = [
        ("如何申请尊享贷", "在贷款频道申请"), ("申请需要什么材料", "身份证和收入证明"),
        ("可以提前还款吗", "提前三天预约"), ("逾期会怎样", "影响征信"), ("额度有效期多久", "有效期一年"),
        ("利率怎么计算", "年化利率3.45%起"), ("放款后多久到账", "实时到账"), ("能否修改还款日", "不支持修改"),
    ]
    faqs = faq_chunks(chunks)
    assert len(faqs) == len(expected) == len(chunks)
    for text, (q, a) in zip(faqs, expected, strict=True):
        assert q in text and a in text
    assert faqs[5] == "问：利率怎么计算？\n答：按日计息。\n年化利率3.45%起。"  # the answer goes on
    assert chunks[6].heading_path == ["尊享贷常见问题", "放款后多久到账？"]


def test_faq_table_rows_and_bare_questions(docs: dict[str, Path], tmp_path: Path) -> None:
    chunks = chunk_blocks(load_document(docs["xlsx"]), "常见问答", "faq")
    assert faq_chunks(chunks) == [
        "问：如何提前还款？\n答：登录手机银行，在我的贷款中申请提前还款。\n分类：还款",
        "问：利率是多少？\n答：年化利率3.45%起，以审批结果为准。\n分类：利率",
        "问：可以线下办理吗？\n答：可以，请携带身份证到任一网点办理。\n分类：渠道",
    ]
    assert chunks[0].heading_path == ["常见问答", "尊享贷问答"]
    # the same with Q/A columns in a csv, detected without doc_type "faq"
    path = tmp_path / "qa.csv"
    path.write_text("Q,A\n怎么开户？,带身份证到网点。\n能否线上办理？,可以，通过手机银行。\n", encoding="utf-8")
    assert faq_chunks(chunk_blocks(load_document(path), "开户问答", "other")) == [
        "问：怎么开户？\n答：带身份证到网点。", "问：能否线上办理？\n答：可以，通过手机银行。",
    ]
    # an FAQ in plain text: a question line, then its answer
    txt = tmp_path / "faq.txt"
    txt.write_text("信用卡常见问题\n\n年费怎么收取？\n首年免年费，刷卡满6次免次年年费。\n\n"
                   "挂失后多久补卡？\n7个工作日内寄出新卡。\n", encoding="utf-8")
    assert faq_chunks(chunk_blocks(load_document(txt), "信用卡常见问题", "faq")) == [
        "年费怎么收取？\n首年免年费，刷卡满6次免次年年费。", "挂失后多久补卡？\n7个工作日内寄出新卡。",
    ]


def test_docx_qa_pair_is_one_chunk(docs: dict[str, Path]) -> None:
    chunks = chunk_blocks(load_document(docs["docx"]), "尊享贷操作手册", "manual")
    [faq] = [c for c in chunks if c.kind == "faq"]
    assert faq.text == "问：审批需要多久？\n答：一般一个工作日内完成。"
    assert faq.heading_path == ["尊享贷操作手册", "常见问题"]


@pytest.mark.skipif(not BANKING_LAW.exists(), reason="the shared regulation corpus is not beside the repo")
def test_regulation_chunks_per_article() -> None:
    blocks = load_document(BANKING_LAW)
    assert (1, "中华人民共和国商业银行法") in headings(blocks)
    assert (2, "第四章 贷款和其他业务的基本规则") in headings(blocks)
    chunks = chunk_blocks(blocks, "商业银行法", "compliance")
    articles = [c for c in chunks if c.kind == "article"]
    assert len(articles) == 95  # 第一条 … 第九十五条, one chunk each
    [art36] = [c for c in articles if c.text.startswith("第三十六条")]
    assert art36.text == (
        "第三十六条 商业银行贷款，借款人应当提供担保。商业银行应当对保证人的偿还能力，抵押物、质物的权属和价值"
        "以及实现抵押权、质权的可行性进行严格审查。\n经商业银行审查、评估，确认借款人资信良好，确能偿还贷款的，"
        "可以不提供担保。"
    )
    assert art36.heading_path == ["商业银行法", "中华人民共和国商业银行法", "第四章 贷款和其他业务的基本规则"]
    [art3] = [c for c in articles if c.text.startswith("第三条 ")]
    assert "（十四）经国务院银行业监督管理机构批准的其他业务。" in art3.text  # items stay in their article
    assert "第一条" not in chunks[0].text and chunks[0].kind == "text"  # the preamble
    # a long article is split, each later part names its article
    small = [c for c in chunk_blocks(blocks, "商业银行法", "compliance", max_chars=120, overlap=20)
             if c.text.startswith("第三条")]
    assert len(small) > 1 and all(len(c.text) <= 120 for c in small)
    assert small[1].text.startswith("第三条（续）\n")


def test_law_in_plain_text_with_standalone_article_labels(tmp_path: Path) -> None:
    path = tmp_path / "办法.txt"
    path.write_text("某某管理办法\n\n第一章　总　则\n\n第一条\n为了规范管理，制定本办法。\n\n第二条　本办法适用于本行。\n\n"
                    "第二章 附  则\n\n第三条 本办法自发布之日起施行。\n", encoding="utf-8")
    blocks = load_document(path)
    assert headings(blocks) == [(1, "某某管理办法"), (2, "第一章 总则"), (2, "第二章 附则")]
    chunks = chunk_blocks(blocks, "某某管理办法", "compliance")
    assert [(c.kind, c.text, c.heading_path[-1]) for c in chunks] == [
        ("article", "第一条 为了规范管理，制定本办法。", "第一章 总则"),
        ("article", "第二条 本办法适用于本行。", "第一章 总则"),
        ("article", "第三条 本办法自发布之日起施行。", "第二章 附则"),
    ]


def test_split_text_and_determinism(docs: dict[str, Path]) -> None:
    pieces = split_text("甲" * 250 + "。" + "乙" * 30 + "，" + "丙" * 30 + "。", 100, 40)
    assert all(len(p) <= 100 for p in pieces) and "".join(pieces).count("丙") >= 30
    blocks = load_document(docs["md"])
    assert chunk_blocks(blocks, "t", "manual") == chunk_blocks(load_document(docs["md"]), "t", "manual")
    with pytest.raises(ValueError):
        chunk_blocks(blocks, "t", "manual", max_chars=100, overlap=90)


# ------------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,content", [
    ("空白.md", b""),
    ("空白.txt", "  \n\u3000\n".encode()),
    ("坏的.docx", b"PK\x03\x04 this is not a zip archive"),
    ("坏的.pdf", b"%PDF-1.4\n%garbage, no objects, no xref\n"),
    ("坏的.xlsx", b"not a workbook"),
    ("图片.pdf", None),  # a valid PDF without any text (a scan)
    ("说明.doc", b"old word"),
])
def test_unreadable_documents_raise_naming_the_file(tmp_path: Path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    if content is None:
        from reportlab.pdfgen import canvas

        c = canvas.Canvas(str(path))
        c.rect(100, 100, 200, 200)
        c.showPage()
        c.save()
    else:
        path.write_bytes(content)
    with pytest.raises(DocumentError) as err:
        load_document(path)
    assert name in str(err.value)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match="不存在.md"):
        load_document(tmp_path / "不存在.md")


# ------------------------------------------------------------------------------------------------
# Offline: no socket is ever opened, from import to chunks
# ------------------------------------------------------------------------------------------------

_OFFLINE_SCRIPT = """
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[1:] if args else kwargs)[:100])
    raise OSError("network is unreachable (blocked by test)")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from pathlib import Path
from ingest.documents import load_document
from ingest.chunking import chunk_blocks
out = {}
for name in sys.argv[1:]:
    blocks = load_document(Path(name))
    out[Path(name).suffix] = [len(blocks), len(chunk_blocks(blocks, "t", "other"))]
import unstructured.nlp.tokenize as tok
out["sentences"] = tok.sent_tokenize("第一句。第二句！Third sentence. 第四句？")
out["attempts"] = attempts
print(json.dumps(out, ensure_ascii=False))
"""


def test_partitioning_works_with_the_network_unreachable(docs: dict[str, Path], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "SCARF_NO_ANALYTICS")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               NO_PROXY="*", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    files = [str(docs[k]) for k in ("md", "txt", "html", "docx", "xlsx", "csv", "pdf")]
    run = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT, *files], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["attempts"] == []  # telemetry off, no model download: not even a try
    for suffix in (".md", ".txt", ".html", ".docx", ".xlsx", ".csv", ".pdf"):
        assert out[suffix][0] > 0 and out[suffix][1] > 0, suffix
    assert out["sentences"] == ["第一句。", "第二句！", "Third sentence.", "第四句？"]
