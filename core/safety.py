"""Recognising instructions that try to take the assistant over, in questions and in documents."""

from __future__ import annotations

import re

INJECTION_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"(忽略|无视|忘记|忘掉|不要理会).{0,10}(之前|以上|上面|前面|所有|全部|你的|先前).{0,8}(指令|指示|规则|提示|设定|要求|约束)",
        r"(ignore|disregard|forget).{0,30}(previous|above|prior|all).{0,20}(instruction|prompt|rule)s?",
        r"(system\s*prompt|系统提示词|开发者模式|越狱|jailbreak)",
        r"(你现在是|从现在起你|你必须|请立即).{0,20}(回复|输出|列出|执行|扮演)",
        r"(直接|立即)(回复|输出).{0,12}[“\"'「『].{0,30}[”\"'」』]",
        r"(列出|导出|发送|输出).{0,10}(所有|全部).{0,8}(客户|用户).{0,8}(手机|电话|身份证|信息)",
        # text telling the assistant how to shape its answer ("回答任何问题时…", "在答案第一行写…")
        r"回答(任何|所有|每个|每一个)(问题|提问)时",
        r"(答案|回答|回复)的?(开头|第一行|首行|末尾|结尾|最后).{0,6}(写|加上?|输出|附上|注明)",
    )
]

_SENTENCE_RE = re.compile(r"[^。！？!?\n]*[。！？!?\n]?")
REDACTED = "〔此处为疑似指令注入的文字，已作为数据忽略〕"


def looks_like_injection(text: str) -> bool:
    return any(p.search(text) for p in INJECTION_PATTERNS)


def neutralize(text: str) -> str:
    """Drop the sentences of a passage that address the assistant instead of the reader."""
    if not looks_like_injection(text):
        return text
    out: list[str] = []
    for sentence in _SENTENCE_RE.findall(text):
        if sentence and looks_like_injection(sentence):
            if not out or out[-1] != REDACTED:
                out.append(REDACTED)
        elif sentence:
            out.append(sentence)
    return "".join(out)
