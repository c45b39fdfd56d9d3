"""Masking of personal data (names, ID numbers, phone numbers) in everything shown to people."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# 18-digit resident ID (last may be X) or 15-digit old form; unified social credit code (18).
_ID_RE = re.compile(r"(?<![0-9A-Za-z])(\d{17}[\dXx]|\d{15})(?![0-9A-Za-z])")
_USCC_RE = re.compile(r"(?<![0-9A-Z])([0-9A-HJ-NPQRTUWXY]{2}\d{6}[0-9A-HJ-NPQRTUWXY]{10})(?![0-9A-Z])")
_PHONE_RE = re.compile(r"(?<!\d)(1[3-9]\d)(\d{4})(\d{4})(?!\d)")


def mask_name(name: str | None) -> str:
    """张三 → 张**, 青岛某某贸易有限公司 → 青岛****: a fixed mask also hides the name's length."""
    if not name:
        return ""
    name = name.strip()
    return name[:2] + "****" if len(name) > 4 else name[:1] + "**"


def mask_id_number(value: str | None) -> str:
    """110101199003071234 → 110***********1234."""
    if not value:
        return ""
    value = value.strip()
    if len(value) <= 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_phone(value: str | None) -> str:
    """13812345678 → 138****5678."""
    if not value:
        return ""
    value = value.strip()
    if len(value) < 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def _mask_uscc(m: re.Match[str]) -> str:
    code = m.group(1)
    # All-letter runs are product codes or words, not credit codes.
    return mask_id_number(code) if any(c.isalpha() for c in code) and code[:2].isalnum() and code[2:8].isdigit() else code


def scrub_text(text: str) -> str:
    """Mask ID numbers and mobile numbers wherever they appear in free text."""
    text = _ID_RE.sub(lambda m: mask_id_number(m.group(1)), text)
    text = _USCC_RE.sub(_mask_uscc, text)
    return _PHONE_RE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


PII_FIELDS = {
    "customer_name": mask_name,
    "id_number": mask_id_number,
    "phone": mask_phone,
}


def mask_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a row with its personal-data fields masked."""
    out = dict(record)
    for field, fn in PII_FIELDS.items():
        if field in out and out[field] is not None:
            out[field] = fn(str(out[field]))
    return out


def mask_data(value: Any) -> Any:
    """Mask PII fields and scrub strings throughout a JSON-like structure."""
    if isinstance(value, Mapping):
        return {k: mask_data(v) for k, v in mask_record(value).items()}
    if isinstance(value, list | tuple):
        return [mask_data(v) for v in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
