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
