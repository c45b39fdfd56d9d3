from pathlib import Path

import pytest

from prompts import load_prompt

PROMPT_FILES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "prompts").glob("*.md"))


@pytest.mark.parametrize("name", PROMPT_FILES)
def test_every_prompt_has_a_version_and_renders(name: str):
    prompt = load_prompt(name)
    assert prompt.version
    placeholders = {m.group("named") or m.group("braced") for m in prompt.template.pattern.finditer(prompt.template.template)} - {None}
    text = prompt.render(**{p: f"<{p}>" for p in placeholders})
    assert "$" not in text and all(f"<{p}>" in text for p in placeholders)


def test_missing_value_is_an_error():
    with pytest.raises(KeyError):
        load_prompt("knowledge_user").render(question="只给了问题")


def test_llm_prompts_render_with_the_askers_role_and_scope():
    router = load_prompt("router_system")
    assert router.version == "router-system-1"
    text = router.render(role="客户经理", scope="市南支行及下辖机构", latest_month="2026-10")
    assert "客户经理" in text and "市南支行及下辖机构" in text and "2026-10" in text and "find_product" in text
    answer = load_prompt("answer_system")
    assert answer.version == "answer-system-1"
    text = answer.render(role="产品经理", scope="全行")
    assert "产品经理" in text and "全行" in text and "原样照抄" in text
    with pytest.raises(KeyError):
        router.render(role="客户经理", scope="全行")  # latest_month missing
