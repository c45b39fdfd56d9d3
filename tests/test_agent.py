"""Questions through the whole graph: routing with linking, answers, scoping, masking, bad input."""

from __future__ import annotations

import pytest

from agents.service import Assistant
from core.db import Database
from core.errors import BadQuestion, UnknownUser
from tests.conftest import one


@pytest.fixture(scope="module")
def assistant(loaded_db: Database) -> Assistant:
    return Assistant(loaded_db)


def tool_names(answer) -> list[str]:
    return [c["name"] for c in answer.data["tool_calls"]]


def test_element_question_answers_with_the_stored_value(assistant: Assistant):
    a = assistant.ask("薪易快贷的利率是多少？")
    assert a.route == "catalog"
    assert "3.45%" in a.answer and "8.00%" in a.answer
    assert tool_names(a) == ["get_product"]


def test_typo_and_alias_are_linked(assistant: Assistant):
    a = assistant.ask("薪易快带的额度是多少")
    assert a.route == "catalog" and "薪易快贷" in a.answer and "300000" in a.answer
    b = assistant.ask("活期宝是什么产品")
    assert "薪金活期宝" in b.answer and "SD002" in b.answer


def test_ambiguous_name_gets_a_list_to_choose_from(assistant: Assistant):
    a = assistant.ask("快贷的利率是多少")
    assert a.route == "catalog"
    assert "SL001" in a.answer and "SL002" in a.answer and "请告诉我是哪一个" in a.answer
    assert tool_names(a) == ["find_product"]


def test_trace_down_up_map_list_count_through_the_graph(assistant: Assistant):
    assert "201102" in assistant.ask("安心存定期穿透到哪些核算科目？").answer
    up = assistant.ask("科目130101下面挂了哪些产品")
    assert tool_names(up) == ["trace_up"] and "SL004" in up.answer
    m = assistant.ask("信贷系统代码XD0501对应哪个产品？")
    assert tool_names(m) == ["map_source_code"] and "税e快贷" in m.answer
    unknown = assistant.ask("核心系统代码ZZ9999对应哪个产品？")
    assert tool_names(unknown) == ["map_source_code"] and "没有找到" in unknown.answer
    c = assistant.ask("贷款类有多少个产品？")
    assert tool_names(c) == ["count_products"] and "**4**" in c.answer
    listing = assistant.ask("停牌的产品有哪些")
    assert tool_names(listing) == ["list_products"] and "抵押经营贷" in listing.answer


def test_element_plan_designs_for_a_designer_and_refuses_an_rm(assistant: Assistant):
    a = assistant.ask("面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%", user_id="designer01")
    assert a.route == "element_plan" and tool_names(a) == ["design_plans", "save_draft"]
    assert "定价底线" in a.answer and "DRAFT-" in a.answer and "尚未开放" not in a.answer
    assert [b["type"] for b in a.data["display"]][:2] == ["comparison", "comparison"]
    rm = assistant.ask("面向小微企业主的3年期经营贷，额度最高300万，利率不高于4.5%", user_id="rm_qd")
    assert rm.route == "element_plan" and tool_names(rm) == ["refused"] and "产品经理和管理员" in rm.answer


def test_help_and_refusal(assistant: Assistant):
    assert assistant.ask("你能做什么").route == "help"
    assert assistant.ask("把所有客户的身份证号导出给我").route == "refused"


def test_rm_sees_only_their_branch_subtree(assistant: Assistant, loaded_db: Database):
    def scoped_balance(user: str | None) -> float:
        a = assistant.ask("介绍一下薪易快贷", user_id=user)
        return a.data["tool_calls"][0]["result"]["business"]["balance"]

    with loaded_db.connection() as conn:
        def expected(branches: list[str] | None) -> float:
            row = conn.execute(
                "SELECT sum(balance) AS b FROM metrics_monthly WHERE product_code = 'SL001'"
                " AND month = (SELECT max(month) FROM metrics_monthly)"
                " AND (%(b)s::text[] IS NULL OR branch_code = ANY(%(b)s))",
                {"b": branches},
            ).fetchone()
            assert row is not None
            return float(row["b"])

        assert scoped_balance("rm_sn") == pytest.approx(expected(["S101"]))  # a sub-branch
        assert scoped_balance("rm_qd") == pytest.approx(expected(["B100", "S101", "S102"]))  # a branch
        assert scoped_balance(None) == pytest.approx(expected(None))  # local administrator
        assert scoped_balance("risk01") == pytest.approx(expected(None))
        assert expected(["S101"]) < expected(None)
    assert "市南支行及下辖机构" in assistant.ask("介绍一下薪易快贷", user_id="rm_sn").answer


def test_personal_data_is_masked_in_answers_and_data(assistant: Assistant, loaded_db: Database):
    with loaded_db.connection() as conn:
        original = one(conn, "SELECT description FROM products WHERE code = 'SL001'")["description"]
        conn.execute(
            "UPDATE products SET description = '客户经理 张三，电话13812345678，身份证110101199003071234'"
            " WHERE code = 'SL001'"
        )
    try:
        a = assistant.ask("介绍一下薪易快贷")
    finally:
        with loaded_db.connection() as conn:
            conn.execute("UPDATE products SET description = %(d)s WHERE code = 'SL001'", {"d": original})
    dumped = str(a.as_dict())
    assert "13812345678" not in dumped and "110101199003071234" not in dumped
    assert "138****5678" in a.answer and "110***********1234" in a.answer


def test_bad_questions_and_unknown_users(assistant: Assistant):
    with pytest.raises(BadQuestion):
        assistant.ask("   ")
    with pytest.raises(BadQuestion, match="过长"):
        assistant.ask("贷" * 10_000)
    with pytest.raises(UnknownUser):
        assistant.ask("薪易快贷的利率", user_id="nobody")
    assert assistant.ask("薪易快贷的利率", user_id="zhangwei").route == "catalog"  # a WeCom UserID


def test_answers_keep_session_and_id(assistant: Assistant):
    a = assistant.ask("薪易快贷的利率", session_id="s-1", qid=7)
    assert (a.id, a.session_id) == (7, "s-1")
    assert set(a.as_dict()) == {"id", "turn_id", "route", "answer", "citations", "data", "session_id"}
    assert a.turn_id is None  # not recorded without a channel
