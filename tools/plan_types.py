"""The shapes element-plan design passes between its steps: requirement → evidence → plans →
sandbox → draft. Plain dataclasses and dicts, JSON-able through `as_dict`, so a draft stores them
as they were and an answer shows only what was computed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The data contract's well-known element keys, in the order a plan lists them.
ELEMENT_KEYS: tuple[str, ...] = (
    "rate_min", "rate_max", "term_min_months", "term_max_months", "amount_min", "amount_max",
    "repayment", "collateral", "target_customers", "eligibility", "channels", "fee", "risk_level",
    "early_repayment", "min_amount",
)
PLAN_NAMES: tuple[str, ...] = ("保守", "均衡", "进取")
DEFAULT_SEED = 20261123  # the sandbox's sample seed unless one is given: the same design, the same figures


@dataclass
class Requirement:
    """What the designer asked for. None = not said; `filled` records what was taken from similar
    products instead (element → where from), `conflicts` what cannot hold together (in Chinese)."""

    text: str
    category: str | None = None  # contract category: loan, deposit, payment, intermediary, market
    segment: str | None = None  # retail, corporate, inclusive, interbank, all
    purpose: str | None = None  # 经营, 消费, 装修, 购车, 养老, … (free text from the question)
    product_type: str | None = None  # e.g. 小微经营贷, 个人消费贷, 三年期定期存款 (matches competitor_rates)
    term_min_months: int | None = None
    term_max_months: int | None = None
    amount_min: float | None = None  # yuan
    amount_max: float | None = None  # yuan
    rate_min: float | None = None  # annual %, a floor the designer set
    rate_max: float | None = None  # annual %, a ceiling the designer set
    collateral: str | None = None  # 信用, 抵押, 质押, 保证
    repayment: str | None = None
    channels: list[str] = field(default_factory=list)  # 线上, 手机银行, 网点, …
    target_customers: str | None = None
    filled: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the text was read, for the answer

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PlanElement:
    element: str  # one of ELEMENT_KEYS (or a bank key)
    value: str  # as the catalogue stores it (text)
    unit: str = ""
    reason: str = ""  # why this value, in Chinese
    sources: list[str] = field(default_factory=list)  # e.g. "FTP 曲线 2026-05-01 36个月 2.00%", "竞品 某行 …"


@dataclass
class Plan:
    """One draft plan. `terms` are the numbers the sandbox needs, all computed, never typed in:
    name, category, segment, rate (annual %), term_months, amount_min, amount_max (yuan),
    collateral, target_customers, channels, ftp_rate, expected_loss_rate, opex_rate,
    capital_cost_rate (annual % of balance), competitor_rate (annual %, None when unknown)."""

    name: str  # 保守 / 均衡 / 进取
    elements: list[PlanElement]
    terms: dict[str, Any]
    pricing: dict[str, Any]  # the floor's parts and the chosen rate, with display strings
    meets_constraints: bool = True
    unmet: list[str] = field(default_factory=list)  # the designer's constraints this plan cannot hold, and why

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
