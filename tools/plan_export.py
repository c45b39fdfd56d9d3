"""Export an element-plan draft as Markdown or DOCX: the same content in both, built once as a
list of blocks (headings, paragraphs, bullet lists, tables) and rendered twice.

Content, in order: title and draft facts; the requirement as read (what was filled in from similar
products, what conflicts); the evidence with its sources; the pricing floor's breakdown; each
plan's elements with the reason and the sources of each; the sandbox's A/B comparison; the
assumptions; the compliance notes; warnings. Every number is a value or display string of the
design (numbers without a display string are printed as stored), nothing is recomputed here.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.text import fmt_money
from tools.catalog import CATEGORY_NAMES, ELEMENT_NAMES, SEGMENT_NAMES
from tools.plan_drafts import element_display, meets_text, plan_element_rows, simulation_rows

FORMATS = {"md": ("text/markdown; charset=utf-8", "md"),
           "docx": ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx")}

@dataclass
class Document:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def h(self, text: str, level: int = 2) -> None:
        self.blocks.append((f"h{level}", text))

    def p(self, text: str) -> None:
        if text:
            self.blocks.append(("p", text))

    def ul(self, items: list[str]) -> None:
        items = [i for i in items if i]
        if items:
            self.blocks.append(("ul", items))

    def table(self, columns: list[str], rows: list[list[Any]]) -> None:
        if rows:
            self.blocks.append(("table", ([str(c) for c in columns], [[_cell(v) for v in r] for r in rows])))


def _cell(v: Any) -> str:
    if v is None or v == "":
        return "—"
    if isinstance(v, bool):
        return "是" if v else "否"
    if isinstance(v, list):
        return "、".join(_cell(x) for x in v) if v else "—"
    if isinstance(v, dict):
        return _text_of(v)
    return str(v)


def _text_of(item: Any) -> str:
    """One line for an item of a list: its name or title, its value (display string first), its source."""
    if not isinstance(item, dict):
        return _cell(item)
    head = next((str(item[k]) for k in ("label", "name", "title", "bank", "element") if item.get(k)), "")
    value = next((str(item[k]) for k in ("display", "value_display", "summary", "text", "snippet", "value", "note")
                  if item.get(k) not in (None, "")), "")
    source = item.get("source") or item.get("sources")
    line = f"{head}：{value}" if head and value else head or value
    if source:
        line += f"（来源：{_cell(source)}）"
    return line


# --- sections -------------------------------------------------------------------------------------

_TITLE_RE = re.compile(r"（草案）$")


def _num(v: Any) -> str:
    return f"{float(v):g}"


def requirement_rows(req: dict[str, Any]) -> list[list[str]]:
    """The requirement as read: one row per item the designer set or that was filled in."""
    filled = req.get("filled") or {}

    def origin(*keys: str) -> str:
        hit = [filled[k] for k in keys if k in filled]
        return "补全：" + "；".join(dict.fromkeys(hit)) if hit else "需求原文"

    rows: list[list[str]] = []

    def add(label: str, value: str | None, *keys: str) -> None:
        if value:
            rows.append([label, value, origin(*keys)])

    add("产品大类", CATEGORY_NAMES.get(req.get("category") or "", req.get("category")), "category")
    add("客群", SEGMENT_NAMES.get(req.get("segment") or "", req.get("segment")), "segment")
    add("产品类型", req.get("product_type"), "product_type")
    add("用途", req.get("purpose"), "purpose")
    lo, hi = req.get("term_min_months"), req.get("term_max_months")
    if lo is not None or hi is not None:
        term = f"{lo}个月" if lo == hi else f"{lo if lo is not None else '—'}–{hi if hi is not None else '—'}个月"
        add("期限", term, "term_min_months", "term_max_months")
    amin, amax = req.get("amount_min"), req.get("amount_max")
    if amin is not None or amax is not None:
        amount = (f"{fmt_money(amin)} 至 {fmt_money(amax)}" if amin is not None and amax is not None
                  else f"最高 {fmt_money(amax)}" if amax is not None else f"最低 {fmt_money(amin)}")
        add("金额", amount, "amount_min", "amount_max")
    if req.get("rate_max") is not None:
        add("利率上限", f"{_num(req['rate_max'])}%", "rate_max")
    if req.get("rate_min") is not None:
        add("利率下限", f"{_num(req['rate_min'])}%", "rate_min")
    add("担保方式", req.get("collateral"), "collateral")
    add("还款方式", req.get("repayment"), "repayment")
    add("办理渠道", "、".join(req.get("channels") or []), "channels")
    add("目标客户", req.get("target_customers"), "target_customers")
    shown = {"category", "segment", "product_type", "purpose", "term_min_months", "term_max_months", "amount_min",
             "amount_max", "rate_max", "rate_min", "collateral", "repayment", "channels", "target_customers"}
    for key, where in filled.items():  # filled elements the requirement has no field for
        if key not in shown:
            rows.append([field_name(key), "（见方案）", f"补全：{where}"])
    return rows


_FIELD_NAMES = {"category": "产品大类", "segment": "客群", "product_type": "产品类型", "purpose": "用途"}


def field_name(key: str) -> str:
    """The Chinese name of a requirement field or element key."""
    return _FIELD_NAMES.get(key) or ELEMENT_NAMES.get(key, key)


def _requirement(doc: Document, req: dict[str, Any], request: str) -> None:
    doc.h("一、需求")
    doc.p(f"原始需求：{request or req.get('text') or '—'}")
    doc.table(["项目", "理解为", "来源"], requirement_rows(req))
    if req.get("filled"):
        doc.p("需求中未写明、由相似产品补全的要素：")
        doc.ul([f"{field_name(k)}：{v}" for k, v in req["filled"].items()])
    if req.get("conflicts"):
        doc.p("相互矛盾的约束：")
        doc.ul(list(req["conflicts"]))
    if req.get("notes"):
        doc.p("解读说明：")
        doc.ul(list(req["notes"]))


def _compliance_line(n: Any) -> str:
    if not isinstance(n, dict) or not n.get("title"):
        return _text_of(n)
    heading = str(n.get("heading") or "").split(" > ")[-1]
    where = f"《{n['title']}" + (f" › {heading}" if heading else "") + "》"
    return f"{where}：{n.get('snippet') or n.get('text') or ''}".rstrip("：")


def _compliance_items(evidence: dict[str, Any]) -> list[Any]:
    return list(evidence.get("compliance") or [])


def _num_line(label: str, item: Any) -> str:
    """「label：display（source）」 of a {"value", "display", "source"} number; "" when it has no value."""
    if not isinstance(item, dict) or item.get("display") in (None, "", "—"):
        return ""
    return f"{label}：{item['display']}" + (f"（{item['source']}）" if item.get("source") else "")


def _perf(p: dict[str, Any], key: str) -> str:
    item = (p.get("performance") or {}).get(key)
    return str(item.get("display") or "—") if isinstance(item, dict) else "—"


def _similar(doc: Document, similar: list[dict[str, Any]], total: dict[str, Any] | None) -> None:
    doc.h("相似产品", 3)
    doc.table(["编码", "名称", "客群", "状态", "相似度", "余额", "不良率", "净贡献", "相似之处"], [
        [p.get("code"), p.get("name"), p.get("segment_name") or p.get("segment"), p.get("status_name") or p.get("status"),
         p.get("score_display") or p.get("score"), _perf(p, "balance"), _perf(p, "npl_rate"),
         _perf(p, "net_contribution"), "；".join(p.get("why") or [])]
        for p in similar
    ])
    first = ((similar[0].get("performance") or {}).get("balance") or {}).get("source") if similar else None
    if first:
        doc.p(f"经营数据来源：{first}" + ("，其余产品同口径" if len(similar) > 1 else ""))
    if total:
        doc.p("相似产品合计：")
        rows = [[label, _disp(total.get(key)), (total.get(key) or {}).get("source")] for key, label in (
            ("balance", "余额"), ("customers", "客户数"), ("net_contribution", "净贡献"), ("yield_rate", "收益率"),
            ("funds_rate", "资金成本率"), ("opex_rate", "运营成本率"), ("provision_rate", "拨备率"),
            ("npl_rate", "不良率"), ("overdue_rate", "逾期率")) if isinstance(total.get(key), dict)]
        doc.table(["指标", "取值", "来源"], [r for r in rows if r[1] not in ("", "—")])


def _competitors(doc: Document, comp: dict[str, Any]) -> None:
    doc.h("竞品利率", 3)
    match = comp.get("match") or {}
    head = f"产品类型「{comp.get('product_type')}」" + (f"，{match['display']}" if match.get("display") else "")
    doc.p(head)
    doc.ul([_num_line(label, comp.get(key)) for key, label in (("min", "最低"), ("median", "中位数"), ("max", "最高"))])
    banks = comp.get("banks") or []
    doc.table(["机构", "日期", "期限（月）", "利率", "说明"],
              [[b.get("bank"), b.get("as_of"), b.get("term_months"), b.get("display"), b.get("notes")] for b in banks])


def _risk(doc: Document, risk: dict[str, Any]) -> None:
    doc.h("相似产品的不良与损失", 3)
    lines = [_num_line(label, risk.get(key)) for key, label in (
        ("npl_rate", "不良率"), ("overdue_rate", "逾期率"), ("provision_rate", "拨备率（年化）"),
        ("pd", "违约概率代理（PD）"), ("lgd", "违约损失率（LGD）"), ("expected_loss_rate", "预期损失率（EL）"))]
    loans = risk.get("loans") or {}
    lines += [_num_line(label, loans.get(key)) for key, label in (
        ("npl_share", "贷款明细不良占比"), ("loss_share", "贷款明细损失类占比"), ("avg_rate", "贷款明细加权利率"))]
    doc.ul(lines)


def _evidence(doc: Document, evidence: dict[str, Any]) -> None:
    doc.h("二、依据")
    if not evidence:
        doc.p("没有记录依据。")
        return
    facts = []
    if evidence.get("scope"):
        facts.append(f"数据范围：{evidence['scope']}")
    window = evidence.get("window") or {}
    if window.get("label"):
        facts.append(f"经营数据窗口：{window['label']}")
    if evidence.get("pricing_term_months"):
        facts.append(f"定价期限：{evidence['pricing_term_months']}个月")
    doc.p("；".join(facts))
    if evidence.get("similar_products"):
        _similar(doc, list(evidence["similar_products"]), evidence.get("similar_total"))
    ftp = evidence.get("ftp")
    if isinstance(ftp, dict) and ftp:
        doc.h("资金转移定价（FTP）", 3)
        doc.p(_num_line("FTP", ftp) or _text_of(ftp))
    if isinstance(evidence.get("competitors"), dict) and evidence["competitors"]:
        _competitors(doc, evidence["competitors"])
    if isinstance(evidence.get("risk"), dict) and evidence["risk"]:
        _risk(doc, evidence["risk"])


_PRICING_KINDS = {"loan_floor": ("定价底线", "floor"), "deposit_ceiling": ("可承受利率上限", "ceiling")}


def _disp(item: Any) -> str:
    """The display string of a {"value", "display", …} number (or the string itself)."""
    if isinstance(item, dict):
        return str(item.get("display") or "")
    return "" if item is None else str(item)


def pricing_headline(pricing: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(label, display, parts as 「label display」) of the price limit: the floor of a loan, the
    ceiling of a deposit; ("", "", []) for fee-priced categories."""
    label, key = _PRICING_KINDS.get(str(pricing.get("kind")), ("定价底线", "floor"))
    head = _disp(pricing.get(key))
    parts = [f"{x.get('label') or x.get('name')} {x.get('display')}" for x in pricing.get("parts") or []
             if isinstance(x, dict) and (x.get("label") or x.get("name")) and x.get("display")]
    return label, head, parts


def plan_pricing_line(pricing: dict[str, Any]) -> str:
    """A plan's quoted rate against the limit and the competitors, from its pricing's display strings."""
    label, head, _ = pricing_headline(pricing)
    bits = []
    if _disp(pricing.get("rate")):
        bits.append(f"报价 {_disp(pricing['rate'])}")
    if head:
        bits.append(f"{label} {head}")
    for key in ("headroom", "vs_competitor"):
        item = pricing.get(key)
        if isinstance(item, dict) and item.get("display"):
            bits.append(f"{item.get('source') or key} {item['display']}")
    return "；".join(bits)


def _pricing(doc: Document, pricing: dict[str, Any]) -> None:
    doc.h("三、定价")
    if not pricing:
        doc.p("没有定价结果。")
        return
    label, head, _ = pricing_headline(pricing)
    if head:
        doc.p(f"{label}：{head}")
    for key in ("formula", "note"):
        if pricing.get(key):
            doc.p(str(pricing[key]))
    parts = [x for x in pricing.get("parts") or [] if isinstance(x, dict)]
    doc.table(["构成", "取值", "依据", "性质"], [
        [x.get("label") or x.get("name") or x.get("key"), x.get("display"), x.get("source"),
         "假设" if x.get("assumption") else "数据"]
        for x in parts
    ])
    facts = []
    if pricing.get("term_months"):
        facts.append(f"定价期限 {pricing['term_months']}个月")
    if pricing.get("collateral"):
        facts.append(f"担保方式 {pricing['collateral']}")
    if pricing.get("segment"):
        facts.append(f"客群 {SEGMENT_NAMES.get(pricing['segment'], pricing['segment'])}")
    if facts:
        doc.p("按" + "，".join(facts) + "计算。")


def _plans(doc: Document, plans: list[dict[str, Any]]) -> None:
    doc.h("四、方案")
    if not plans:
        doc.p("没有生成方案。")
        return
    doc.p("各方案要素一览：")
    names = [p.get("name", "") for p in plans]
    doc.table(["要素", *names], [*plan_element_rows(plans), ["满足设计约束", *[meets_text(p) for p in plans]]])
    for plan in plans:
        doc.h(f"方案：{plan.get('name', '')}", 3)
        doc.p("满足设计约束：" + meets_text(plan))
        line = plan_pricing_line(plan.get("pricing") or {})
        if line:
            doc.p("定价：" + line)
        # (要素, 取值, 理由, 来源): Markdown shows one table; DOCX a table and a paragraph per reason.
        doc.blocks.append(("elements", [
            [ELEMENT_NAMES.get(e["element"], e["element"]), element_display(e), str(e.get("reason") or ""),
             "；".join(e.get("sources") or []) or "—"]
            for e in plan.get("elements") or []
        ]))


def _simulation(doc: Document, simulation: dict[str, Any] | None, plans: list[dict[str, Any]]) -> None:
    doc.h("五、A/B 沙盘对比")
    if not simulation:
        doc.p("本草案未做沙盘模拟。")
        return
    snap = simulation.get("snapshot") or {}
    facts = []
    if simulation.get("scope"):
        facts.append(f"范围：{simulation['scope']}")
    if snap.get("customers_display"):
        facts.append(f"客户快照 {snap['customers_display']}" + (f"（持仓月份 {snap['holdings_month']}）"
                                                              if snap.get("holdings_month") else ""))
    if simulation.get("months"):
        facts.append(f"模拟 {simulation['months']} 个月")
    if simulation.get("seed") is not None:
        facts.append(f"随机种子 {simulation['seed']}")
    doc.p("；".join(facts))
    if simulation.get("message"):
        doc.p(str(simulation["message"]))
    block = simulation.get("comparison") or {}
    if block.get("rows"):
        if block.get("title"):
            doc.p(str(block["title"]))
        doc.table([str(c) for c in block.get("columns") or []], [list(r) for r in block["rows"]])
    elif plans and simulation_rows(simulation, [p.get("name", "") for p in plans]):
        doc.table(["指标", *[p.get("name", "") for p in plans]],
                  simulation_rows(simulation, [p.get("name", "") for p in plans]))
    shown: dict[str, str] = {}  # sample rows → the plan that showed them (plans share their draws)
    for r in simulation.get("plans") or []:
        sample = r.get("sample") or []
        if not sample:
            continue
        rows = [[x.get("pseudonym"), x.get("segment"), x.get("branch_name") or x.get("branch"), x.get("capacity_band"),
                 f"第{x['start_month']}月" if x.get("start_month") else "—", x.get("amount_display")] for x in sample]
        key = repr(rows)
        if key in shown:
            doc.p(f"{r.get('name')}：办理客户样本与{shown[key]}方案相同。")
            continue
        shown[key] = str(r.get("name"))
        doc.p(f"{r.get('name')}：办理客户样本（假名，前 {len(sample)} 户）")
        doc.table(["客户（假名）", "客群", "机构", "能力区间", "起始月", "金额"], rows)


def assumptions_of(design: dict[str, Any]) -> list[str]:
    """The assumptions the pricing and the sandbox stated, in that order, each once."""
    found: list[str] = []
    simulation = design.get("simulation") or {}
    sources: list[tuple[str, Any]] = [("", design.get("evidence") or {}), ("", design.get("pricing") or {}),
                                      ("", simulation)]
    sources += [(f"{r.get('name')}：", r) for r in simulation.get("plans") or [] if isinstance(r, dict)]
    for prefix, part in sources:
        items = part.get("assumptions") if isinstance(part, dict) else None
        for a in items or []:
            text = _text_of(a)
            if text and prefix + text not in found:
                found.append(prefix + text)
    return found


def warnings_of(design: dict[str, Any]) -> list[str]:
    """The design's warnings, then the evidence's, pricing's and sandbox's not already said, each once."""
    found: list[str] = []
    for part in (design, design.get("evidence") or {}, design.get("pricing") or {}, design.get("simulation") or {}):
        for w in (part.get("warnings") if isinstance(part, dict) else None) or []:
            if _cell(w) not in found:
                found.append(_cell(w))
    return found


def local_time(stamp: str) -> str:
    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def build_document(draft: dict[str, Any]) -> Document:
    """The export's content as blocks, from a draft (`get_draft`) or a design (`design_plans`)."""
    req = draft.get("requirement") or {}
    name = draft.get("name") or "要素方案（草案）"
    code = draft.get("code")
    doc = Document(title=f"{name}" + (f" {code}" if code else ""))
    facts = []
    if code:
        facts.append(f"草案编号：{code}")
    facts.append(f"状态：{draft.get('status_name') or '创设'}")
    if draft.get("created_by_name") or draft.get("created_by"):
        facts.append(f"创建人：{draft.get('created_by_name') or draft.get('created_by')}")
    if draft.get("created_at"):
        facts.append(f"创建时间：{local_time(draft['created_at'])}")
    if draft.get("seed") is not None:
        facts.append(f"模拟随机种子：{draft['seed']}")
    doc.p("；".join(facts))
    _requirement(doc, req, draft.get("request") or req.get("text") or "")
    _evidence(doc, draft.get("evidence") or {})
    _pricing(doc, draft.get("pricing") or {})
    plans = list(draft.get("plans") or [])
    _plans(doc, plans)
    _simulation(doc, draft.get("simulation"), plans)
    doc.h("六、假设")
    assumptions = assumptions_of(draft)
    if assumptions:
        doc.ul(assumptions)
    else:
        doc.p("没有记录假设。")
    doc.h("七、合规提示")
    notes = _compliance_items(draft.get("evidence") or {})
    if notes:
        doc.ul([_compliance_line(n) for n in notes])
    else:
        doc.p("没有检索到适用的合规要点，请在准入阶段由合规部门复核。")
    warnings = warnings_of(draft)
    if warnings:
        doc.h("八、提示")
        doc.ul(warnings)
    return doc


# --- renderers ------------------------------------------------------------------------------------


def _md_cell(v: str) -> str:
    return v.replace("|", "／").replace("\n", " ")


def _md_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def to_markdown(draft: dict[str, Any]) -> str:
    doc = build_document(draft)
    out = [f"# {doc.title}", ""]
    for kind, value in doc.blocks:
        if kind.startswith("h"):
            out += ["#" * int(kind[1:]) + " " + value, ""]
        elif kind == "p":
            out += [value, ""]
        elif kind == "ul":
            out += [f"- {_md_cell(i)}" for i in value] + [""]
        elif kind == "elements":
            out.append(_md_table(["要素", "取值", "理由", "来源"], [[n, v, r or "—", src] for n, v, r, src in value]))
            out.append("")
        elif kind == "table":
            columns, rows = value
            width = max([len(columns), *(len(r) for r in rows)])
            out += [_md_table(columns + [""] * (width - len(columns)), [r + ["—"] * (width - len(r)) for r in rows]), ""]
    return "\n".join(out).rstrip() + "\n"


def _docx_table(d: Any, columns: list[str], rows: list[list[str]]) -> None:
    width = max([len(columns), *(len(r) for r in rows)])
    table = d.add_table(rows=1 + len(rows), cols=width)
    table.style = "Table Grid"
    for c, name in enumerate(columns):
        table.cell(0, c).text = name
    for r, row in enumerate(rows, 1):
        for c, cell in enumerate(row):
            table.cell(r, c).text = cell
    d.add_paragraph("")


def to_docx(draft: dict[str, Any]) -> bytes:
    import docx

    from core.docx_fonts import use_east_asian_font

    doc = build_document(draft)
    d = docx.Document()
    d.core_properties.title = doc.title
    d.core_properties.author = "谱翼 Puyi"
    use_east_asian_font(d)
    d.add_heading(doc.title, level=0)
    for kind, value in doc.blocks:
        if kind.startswith("h"):
            d.add_heading(value, level=min(int(kind[1:]) - 1, 3) or 1)
        elif kind == "p":
            d.add_paragraph(value)
        elif kind == "ul":
            for item in value:
                d.add_paragraph(item, style="List Bullet")
        elif kind == "table":
            _docx_table(d, *value)
        elif kind == "elements":
            _docx_table(d, ["要素", "取值", "来源"], [[n, v, src] for n, v, _, src in value])
            d.add_paragraph("理由：")
            for n, _, reason, _ in value:
                if reason:
                    d.add_paragraph(f"{n}：{reason}")
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def export_draft(draft: dict[str, Any], fmt: str) -> tuple[bytes, str, str]:
    """(content, file name, media type) of a draft in `md` or `docx`."""
    fmt = (fmt or "md").lower().lstrip(".")
    if fmt == "markdown":
        fmt = "md"
    if fmt not in FORMATS:
        from core.errors import PuyiError

        raise PuyiError(f"不支持的导出格式 {fmt!r}：可选 md 或 docx (unsupported format)")
    media, ext = FORMATS[fmt]
    base = draft.get("code") or _TITLE_RE.sub("", draft.get("name") or "plan") or "plan"
    content = to_markdown(draft).encode("utf-8") if fmt == "md" else to_docx(draft)
    return content, f"{base}.{ext}", media
