"""Requirement parsing for element plans (tools/plan_requirements.py): pure text, no database."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tools.plan_requirements import cn_value, parse_requirement
from tools.plan_types import Requirement

ISSUE_EXAMPLE = "面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%，线上办理"

# Every field a designer may state; what the text does not say must stay empty.
STATED = ("category", "segment", "purpose", "product_type", "term_min_months", "term_max_months", "amount_min",
          "amount_max", "rate_min", "rate_max", "collateral", "repayment", "target_customers")


def _fields(req: Requirement) -> dict[str, Any]:
    return {k: getattr(req, k) for k in (*STATED, "channels")}


def test_issue_example() -> None:
    req = parse_requirement(ISSUE_EXAMPLE)
    assert req.text == ISSUE_EXAMPLE
    assert req.category == "loan"
    assert req.segment == "inclusive"
    assert req.purpose == "经营"
    assert req.product_type == "小微经营贷"
    assert (req.term_min_months, req.term_max_months) == (36, 36)
    assert req.amount_max == 3_000_000 and req.amount_min is None
    assert req.rate_max == 4.5 and req.rate_min is None
    assert req.channels == ["线上"]
    assert req.target_customers == "小微企业主"
    assert req.collateral is None and req.repayment is None
    assert req.conflicts == [] and req.filled == {}
    assert "「3年期」读作期限 36 个月" in req.notes
    assert any("最高300万" in n and "3,000,000 元" in n for n in req.notes)
    assert any("不高于4.5%" in n and "上限" in n for n in req.notes)


CASES: list[tuple[str, dict[str, Any]]] = [
    # --- category ---
    ("个人消费贷款", {"category": "loan", "segment": "retail", "purpose": "消费", "product_type": "个人消费贷"}),
    ("一款按揭产品", {"category": "loan"}),
    ("大额存单", {"category": "deposit", "product_type": "大额存单"}),
    ("面向居民的储蓄产品", {"category": "deposit", "segment": "retail", "target_customers": "居民"}),
    ("代销基金", {"category": "intermediary", "product_type": "代销基金"}),
    ("面向老年客户的保险", {"category": "intermediary", "product_type": "代销保险", "target_customers": "老年客户"}),
    ("商户收单服务", {"category": "payment", "segment": "inclusive", "product_type": "收单服务"}),
    ("同业存单，期限3个月", {"category": "market", "segment": "interbank", "product_type": "同业存单",
                       "term_min_months": 3, "term_max_months": 3}),
    ("企业票据贴现，期限不超过一年", {"category": "market", "segment": "corporate", "product_type": "票据贴现",
                           "term_min_months": None, "term_max_months": 12}),
    # the head noun decides when two categories are mentioned
    ("存单质押贷款", {"category": "loan", "collateral": "质押"}),
    ("面向房贷客户的理财产品", {"category": "intermediary", "purpose": None, "target_customers": "房贷客户"}),
    # --- segment and purpose → product type ---
    ("针对新市民推出消费贷", {"segment": "retail", "target_customers": "新市民", "product_type": "个人消费贷"}),
    ("为代发工资的企业员工提供消费贷", {"segment": "retail", "target_customers": "代发工资的企业员工"}),
    ("对公流动资金贷款", {"segment": "corporate", "purpose": "经营", "product_type": "企业流动资金贷款"}),
    ("面向个体工商户的经营贷", {"segment": "inclusive", "product_type": "小微经营贷"}),
    ("普惠型小微企业贷款", {"segment": "inclusive", "product_type": "小微企业贷款", "purpose": None}),
    ("面向农户的生产经营贷款", {"segment": "inclusive", "purpose": "经营", "product_type": "涉农经营贷"}),
    ("个人住房贷款，首套房", {"purpose": "购房", "product_type": "个人住房贷款"}),
    ("新能源汽车消费贷款", {"purpose": "购车", "product_type": "个人汽车贷款"}),
    ("家装分期贷款", {"purpose": "装修", "product_type": "个人装修贷款"}),
    ("科技型企业信用贷款", {"segment": "corporate", "purpose": "科创", "product_type": "科技企业贷款"}),
    ("针对老年客户推出养老理财", {"purpose": "养老", "product_type": "养老理财"}),
    ("面向教育需求的个人贷款", {"purpose": "教育"}),
    # --- term ---
    ("期限36个月的消费贷", {"term_min_months": 36, "term_max_months": 36}),
    ("经营贷，期限1-3年", {"term_min_months": 12, "term_max_months": 36}),
    ("经营贷，最长5年", {"term_min_months": None, "term_max_months": 60}),
    ("定期存款，半年", {"term_min_months": 6, "term_max_months": 6, "product_type": "六个月定期存款"}),
    ("消费贷，期限不超过24个月", {"term_min_months": None, "term_max_months": 24}),
    ("消费贷，期限一年半", {"term_min_months": 18, "term_max_months": 18}),
    ("消费贷，分36期", {"term_min_months": 36, "term_max_months": 36}),
    ("经营贷，期限6个月至3年", {"term_min_months": 6, "term_max_months": 36}),
    ("经营贷，1年以上", {"term_min_months": 12, "term_max_months": None}),
    ("定期存款，期限1年、2年或3年", {"term_min_months": 12, "term_max_months": 36}),
    ("三年期定期存款", {"term_min_months": 36, "term_max_months": 36, "product_type": "三年期定期存款"}),
    ("loan, term 3 years", {"category": "loan", "term_min_months": 36, "term_max_months": 36}),
    # --- amount ---
    ("消费贷，额度5万-50万", {"amount_min": 50_000, "amount_max": 500_000}),
    ("消费贷，额度5-50万元", {"amount_min": 50_000, "amount_max": 500_000}),
    ("大额存单，起存5万", {"amount_min": 50_000, "amount_max": None}),
    ("理财，1000元起购", {"amount_min": 1_000, "amount_max": None}),
    ("经营贷，额度最高三百万", {"amount_max": 3_000_000}),
    ("经营贷，额度一亿五千万", {"amount_max": 150_000_000}),
    ("经营贷，额度3千万", {"amount_max": 30_000_000}),
    ("消费贷，额度最高30w", {"amount_max": 300_000}),
    ("消费贷，额度2万元至20万元", {"amount_min": 20_000, "amount_max": 200_000}),
    ("经营贷，单户额度不超过1000万元", {"amount_max": 10_000_000}),
    ("经营贷，额度最高1亿", {"amount_max": 100_000_000}),
    ("消费贷，额度最高300,000元", {"amount_max": 300_000}),
    ("loan for consumers, amount 50k-500k", {"amount_min": 50_000, "amount_max": 500_000, "segment": "retail"}),
    ("small business loan up to 3 million", {"amount_max": 3_000_000, "segment": "inclusive"}),
    # --- rate ---
    ("经营贷，利率不高于4.5%", {"rate_max": 4.5, "rate_min": None}),
    ("消费贷，年化4%以内", {"rate_max": 4.0, "rate_min": None}),
    ("定期存款，利率不低于3.2%", {"rate_min": 3.2, "rate_max": None}),
    ("住房贷款，利率3.5%-4.2%", {"rate_min": 3.5, "rate_max": 4.2}),
    ("消费贷，利率在3.5%到4.2%之间", {"rate_min": 3.5, "rate_max": 4.2}),
    ("经营贷，年息4.5厘", {"rate_min": 4.5, "rate_max": 4.5}),
    ("经营贷，月息4厘", {"rate_min": 4.8, "rate_max": 4.8}),
    ("消费贷，日利率0.02%", {"rate_min": 7.3, "rate_max": 7.3}),
    ("经营贷，年化利率百分之三点八五", {"rate_min": 3.85, "rate_max": 3.85}),
    ("大额存单，利率3%左右", {"rate_min": 3.0, "rate_max": 3.0}),
    ("经营贷，利率低至3.45%", {"rate_min": 3.45, "rate_max": None}),
    ("经营贷利率不高于4.5", {"rate_max": 4.5}),
    ("loan, rate below 4.5%", {"rate_max": 4.5, "rate_min": None}),
    ("deposit, rate at least 2.5 percent", {"category": "deposit", "rate_min": 2.5, "rate_max": None}),
    # --- collateral ---
    ("纯信用经营贷", {"collateral": "信用"}),
    ("免抵押消费贷", {"collateral": "信用"}),
    ("房产抵押经营贷", {"collateral": "抵押"}),
    ("应收账款质押贷款", {"collateral": "质押"}),
    ("担保公司担保的经营贷", {"collateral": "保证"}),
    ("信用良好的客户可申请消费贷", {"collateral": None}),
    # --- repayment ---
    ("消费贷，等额本息", {"repayment": "等额本息"}),
    ("经营贷，先息后本", {"repayment": "先息后本"}),
    ("经营贷，按月付息，到期还本", {"repayment": "先息后本"}),
    ("经营贷，随借随还", {"repayment": "随借随还"}),
    ("经营贷，到期一次性还本付息", {"repayment": "到期一次还本付息"}),
    ("住房贷款，等额本息或等额本金", {"repayment": "等额本息、等额本金"}),
    # --- channels ---
    ("消费贷，手机银行和小程序办理", {"channels": ["手机银行", "小程序"]}),
    ("经营贷，企业网银办理", {"channels": ["网银"]}),
    ("定期存款，网点柜面办理", {"channels": ["网点", "柜面"]}),
    ("消费贷，线上线下均可", {"channels": ["线上", "线下"]}),
    # --- target customers ---
    ("面向年营业收入500万以下的小微企业的经营贷",
     {"target_customers": "年营业收入500万以下的小微企业", "amount_max": None}),
    ("目标客群为新市民，消费贷", {"target_customers": "新市民"}),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0] for c in CASES])
def test_phrasings(text: str, expected: dict[str, Any]) -> None:
    req = parse_requirement(text)
    got = {k: getattr(req, k) for k in expected}
    assert got == expected, req.notes


def test_enough_cases() -> None:
    assert len(CASES) >= 40


def test_full_width_and_spaces_read_like_plain_text() -> None:
    wide = parse_requirement("面向 小微企业主 的 ３年期 经营贷 ，额度最高 ３００万 ，利率不高于 ４．５％ ，线上办理")
    assert _fields(wide) == _fields(parse_requirement(ISSUE_EXAMPLE))
    assert "「３年期」读作期限 36 个月" in wide.notes  # the designer's own words are quoted


def test_chinese_numerals_read_like_digits() -> None:
    cn = parse_requirement("面向小微企业主的三年期经营贷，额度最高三百万，利率不高于百分之四点五，线上办理")
    assert _fields(cn) == _fields(parse_requirement(ISSUE_EXAMPLE))


def test_english_description() -> None:
    req = parse_requirement("A 3-year small business loan, amount up to 3 million, rate below 4.5%, online")
    assert (req.category, req.segment, req.term_min_months, req.term_max_months) == ("loan", "inclusive", 36, 36)
    assert (req.amount_max, req.rate_max, req.channels) == (3_000_000, 4.5, ["线上"])


CONFLICTS: list[tuple[str, str]] = [
    ("经营贷，利率不低于5%，不高于4%", "利率下限 5% 高于利率上限 4%"),
    ("经营贷，额度最低100万，最高50万", "金额下限 1,000,000 元 高于金额上限 500,000 元"),
    ("经营贷，期限最短5年，最长3年", "期限下限 60 个月长于期限上限 36 个月"),
    ("消费贷，期限5-3年", "期限区间「5-3年」前大后小"),
    ("消费贷，利率4.5%-3.5%", "年利率区间「4.5%-3.5%」前大后小"),
    ("消费贷，额度50万-5万", "金额区间「50万-5万」前大后小"),
    ("三年期定期存款，房产抵押", "存款产品不需要担保方式"),
    ("大额存单，可质押", "存款产品不需要担保方式"),
    ("个人消费贷，起存5万", "贷款产品没有起存（起购）金额"),
    ("消费贷，利率不高于30%", "高于 24%"),
    ("消费贷，利率0%", "不大于 0"),
    ("消费贷，利率-1%", "不大于 0"),
    ("消费贷，额度0元", "金额上限 0 元 不大于 0"),
    ("经营贷，期限0个月", "期限下限 0 个月不大于 0"),
]


@pytest.mark.parametrize(("text", "expected"), CONFLICTS, ids=[c[0] for c in CONFLICTS])
def test_conflicts_are_explained(text: str, expected: str) -> None:
    req = parse_requirement(text)
    assert any(expected in c for c in req.conflicts), req.conflicts


def test_inverted_range_is_one_conflict_and_kept_as_written() -> None:
    req = parse_requirement("消费贷，期限5-3年")
    assert (req.term_min_months, req.term_max_months) == (60, 36)
    assert len(req.conflicts) == 1 and "疑为写反" in req.conflicts[0]


def test_several_conflicts_at_once() -> None:
    req = parse_requirement("经营贷，利率不低于5%，不高于4%，额度最低100万，最高50万，期限最短5年最长3年，起存1万")
    joined = "\n".join(req.conflicts)
    for part in ("利率下限", "金额下限", "期限下限", "起存"):
        assert part in joined


def test_no_conflict_for_a_sound_requirement() -> None:
    for text in (ISSUE_EXAMPLE, "三年期定期存款，起存五万，利率不低于2.5%", "大额存单，20万起，期限三年"):
        assert parse_requirement(text).conflicts == [], text


@pytest.mark.parametrize("text", ["", "设计一款新产品", "帮我做个方案", "   "])
def test_nothing_is_invented(text: str) -> None:
    req = parse_requirement(text)
    assert all(getattr(req, k) is None for k in STATED)
    assert req.channels == [] and req.conflicts == [] and req.filled == {}


def test_absent_fields_stay_none() -> None:
    req = parse_requirement("面向新市民的消费贷")
    assert (req.category, req.segment, req.purpose) == ("loan", "retail", "消费")
    for k in ("term_min_months", "term_max_months", "amount_min", "amount_max", "rate_min", "rate_max",
              "collateral", "repayment"):
        assert getattr(req, k) is None, k
    assert req.channels == []


def test_numbers_about_something_else_are_not_product_terms() -> None:
    req = parse_requirement("面向18-60周岁、成立满2年、年营业收入500万以下的小微企业主的经营贷，首付比例不低于30%，"
                            "不良率控制在2%以内，2026年12月31日前上线，服务10万户")
    for k in ("term_min_months", "term_max_months", "amount_min", "amount_max", "rate_min", "rate_max"):
        assert getattr(req, k) is None, (k, req.notes)
    notes = "\n".join(req.notes)
    assert "成立满2年" in notes and "年营业收入500万" in notes and "不良率" in notes


def test_relative_rates_are_noted_not_converted() -> None:
    req = parse_requirement("个人住房贷款，利率LPR+50BP，期限最长30年")
    assert req.rate_min is None and req.rate_max is None
    assert req.term_max_months == 360
    assert any("LPR" in n and "未换算" in n for n in req.notes)


def test_ambiguous_readings_are_noted() -> None:
    req = parse_requirement("消费贷，额度300万，分36期，月息5厘，3年期，最长5年")
    notes = "\n".join(req.notes)
    assert "按额度读作金额上限" in notes  # a plain 额度 is a ceiling
    assert "按月分期" in notes
    assert "月息 1 厘 = 0.1%" in notes and req.rate_max == 6.0
    assert "取「最长5年」" in notes and req.term_max_months == 60
    bare = parse_requirement("经营贷，额度最高300，期限36")
    assert bare.amount_max == 300 and bare.term_min_months is None
    assert any("按元读取" in n for n in bare.notes) and any("未写期限单位" in n for n in bare.notes)


def test_deposit_plain_amount_is_a_minimum() -> None:
    req = parse_requirement("大额存单，金额20万")
    assert (req.amount_min, req.amount_max) == (200_000, None)


def test_result_is_json_able() -> None:
    data = parse_requirement(ISSUE_EXAMPLE).as_dict()
    assert json.loads(json.dumps(data, ensure_ascii=False)) == data


@pytest.mark.parametrize(("run", "value"), [
    ("三", 3), ("十", 10), ("十二", 12), ("二十四", 24), ("三百", 300), ("三百万", 3_000_000),
    ("一亿五千万", 150_000_000), ("一百零五", 105), ("三百五", 350), ("一万五", 15_000), ("两千", 2000),
    ("四点五", 4.5), ("三点八五", 3.85), ("一二", None),
])
def test_cn_value(run: str, value: float | None) -> None:
    assert cn_value(run) == value
