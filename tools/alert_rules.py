"""Alert rules as data: the data contract's five defaults, a bank's `alert_rules.yaml` over them,
and the `RuleBook` that re-reads that file whenever it changes, without a restart.

A rule fires for a sellable product when, on the month evaluated, the rule's metric (any canonical
metric or fact of `tools.metric_defs`, summed over all branches) satisfies `op threshold`, stays
below `upper` (a band), rose at least `rise_pct` % relative to the month before, and (with
`months: N`) satisfied `op threshold` in each of the last N months. See README "预警规则".

A file with errors is refused as a whole: the rules in force before stay in force (the defaults
if there were none) and the errors are reported; unknown keys are only warnings.
"""

from __future__ import annotations

import hashlib
import logging
import operator
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import yaml

from core.text import fmt_money, normalize
from tools.catalog import CATEGORY_NAMES, SEGMENT_NAMES, STATUS_NAMES
from tools.metric_defs import FACTS, METRICS, Fact, Metric, definition

log = logging.getLogger("puyi.alerts")

RULES_FILE = "alert_rules.yaml"  # as in ingest.contract.ALERT_RULES_FILE
LEVEL_NAMES = {"suspend": "停牌", "watch": "关注", "exit_review": "退出评估"}
LEVEL_ORDER = {"suspend": 0, "exit_review": 1, "watch": 2}  # most severe first
# Canonical comparison → how it is written in conditions; accepted spellings below.
OP_SIGNS = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}
_OP_ALIASES = {
    ">=": ">=", "≥": ">=", "=>": ">=", "ge": ">=", "gte": ">=", "大于等于": ">=", "不低于": ">=",
    ">": ">", "gt": ">", "大于": ">", "高于": ">",
    "<=": "<=", "≤": "<=", "=<": "<=", "le": "<=", "lte": "<=", "小于等于": "<=", "不高于": "<=",
    "<": "<", "lt": "<", "小于": "<", "低于": "<",
}
_OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_CATEGORY_ALIASES = {**{k: k for k in CATEGORY_NAMES}, **{v: k for k, v in CATEGORY_NAMES.items()},
                     "贷款类": "loan", "存款类": "deposit"}
_STATUS_ALIASES = {**{k: k for k in STATUS_NAMES}, **{v: k for k, v in STATUS_NAMES.items()}}
_SEGMENT_ALIASES = {**{k: k for k in SEGMENT_NAMES}, **{v: k for k, v in SEGMENT_NAMES.items()}}
LEVEL_ALIASES = {**{k: k for k in LEVEL_NAMES}, **{v: k for k, v in LEVEL_NAMES.items()}}
LEVEL_CHOICES = "可用 suspend（停牌）、watch（关注）、exit_review（退出评估）(unknown level)"
_ALL = ("all", "*", "any", "全部", "所有")

RULE_KEYS = frozenset({
    "name", "metric", "op", "threshold", "upper", "rise_pct", "months", "level", "applies_to",
    "category", "categories", "status", "statuses", "segment", "segments", "products", "enabled", "title",
    "advice",
})
_FILTER_KEYS = frozenset({"category", "categories", "status", "statuses", "segment", "segments", "products"})
MAX_MONTHS = 24


@dataclass(frozen=True)
class Rule:
    """One alert rule. `categories`, `statuses`, `segments`, `products`: None = no restriction."""

    name: str
    metric: str
    op: str
    threshold: float
    level: str
    title: str = ""
    upper: float | None = None  # band: the value must also stay below this
    rise_pct: float | None = None  # relative rise on the previous month, in %
    months: int = 1  # the comparison holds in each of the last `months` months
    categories: tuple[str, ...] | None = None
    statuses: tuple[str, ...] | None = None
    segments: tuple[str, ...] | None = None
    products: tuple[str, ...] | None = None
    enabled: bool = True
    advice: tuple[str, ...] = ()
    origin: str = "default"  # default | file | default+file

    @property
    def definition(self) -> Metric | Fact:
        return definition(self.metric)

    @property
    def unit(self) -> str:
        return self.definition.unit

    def holds(self, value: Decimal | None) -> bool:
        """The comparison against the threshold (and the band's upper bound), exact in Decimal."""
        if value is None:
            return False
        return compare(self.op, value, Decimal(str(self.threshold))) and (self.upper is None or value < Decimal(str(self.upper)))

    def applies(self, product: dict[str, Any]) -> bool:
        """Whether the rule watches this product; retired products only when `statuses` says so."""
        if self.statuses is None and product.get("status") == "retired":
            return False
        return all(
            allowed is None or product.get(key) in allowed
            for key, allowed in (("category", self.categories), ("status", self.statuses),
                                 ("segment", self.segments), ("code", self.products))
        )

    def condition(self) -> str:
        """The condition in Chinese, with the rule's own numbers: 1.2% ≤ 不良率 < 3%."""
        d = self.definition
        if self.upper is not None and self.op in (">=", ">"):
            low = "≤" if self.op == ">=" else "<"
            text = f"{fmt_number(self.threshold, d.unit)} {low} {d.name} < {fmt_number(self.upper, d.unit)}"
        else:
            text = f"{d.name} {OP_SIGNS[self.op]} {fmt_number(self.threshold, d.unit)}"
            if self.upper is not None:
                text += f" 且 < {fmt_number(self.upper, d.unit)}"
        if self.rise_pct is not None:
            text += f"，且较上月相对上升 ≥ {fmt_plain(self.rise_pct)}%"
        if self.months > 1:
            text = f"连续 {self.months} 个月 {text}"
        return text

    def scope_text(self) -> str:
        parts = []
        if self.categories:
            parts.append("、".join(CATEGORY_NAMES.get(c, c) for c in self.categories) + "类")
        if self.segments:
            parts.append("、".join(SEGMENT_NAMES.get(s, s) for s in self.segments))
        if self.statuses:
            parts.append("、".join(STATUS_NAMES.get(s, s) for s in self.statuses) + "状态")
        if self.products:
            parts.append("产品 " + "、".join(self.products))
        return "的".join(parts) + "可售产品" if parts else "全部可售产品"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("categories", "statuses", "segments", "products", "advice"):
            d[key] = list(d[key]) if d[key] is not None else None
        d.update(level_name=LEVEL_NAMES.get(self.level, self.level), metric_name=self.definition.name,
                 unit=self.unit, condition=self.condition(), applies_to=self.scope_text())
        return d


def fmt_plain(x: float | Decimal) -> str:
    """A number without trailing zeros: 3 → 3, 1.5 → 1.5, 0.125 → 0.125."""
    text = f"{float(x):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def compare(op: str, value: Decimal, threshold: Decimal) -> bool:
    """`value op threshold` for a rule's operator (>=, >, <=, <)."""
    return _OPERATORS[op](value, threshold)


def fmt_number(x: float | Decimal | None, unit: str) -> str:
    """A value in the metric's unit as people read it: 3.46%, 5.20‱, 1,234.56 万元, 1,200 户."""
    if x is None:
        return "—"
    v = float(x)
    if unit in ("%", "‱"):
        return f"{v:,.2f}{unit}"
    if unit == "元":
        return fmt_money(v)
    if unit == "分":
        return f"{v:,.1f} 分"
    return f"{v:,.0f} {unit}" if float(v).is_integer() else f"{v:,.2f} {unit}"


# --- the defaults (data contract, "Alert rules") -------------------------------------------------

_ADVICE = {
    "npl_suspend": (
        "暂停新增投放（停牌），冻结未使用额度，整改完成前不复牌",
        "对排名靠前的不良贷款逐笔制定清收处置方案（催收、重组、诉讼或核销）",
        "对不良集中的机构开展专项检查，复核贷前调查、审批与贷后管理",
        "复盘产品准入标准和风控模型，形成整改报告后申请复牌",
    ),
    "npl_watch": (
        "列入关注名单，按月跟踪不良率走势，接近停牌阈值时提前预警",
        "排查关注类和逾期贷款，提前化解，防止劣变为不良",
        "复核不良集中机构的贷后管理，必要时收紧该机构的准入与授权",
    ),
    "overdue_jump": (
        "核查逾期上升的来源：集中在哪些机构、哪些放款批次",
        "加强早期催收，防止逾期贷款转为不良",
        "复核近期放款的准入与审批质量，必要时收紧准入",
    ),
    "deposit_drain": (
        "排查大额流出客户的资金去向：是行内转移还是流失他行",
        "对比竞品利率与本行定价，评估是否需要调整",
        "组织重点客户回访与挽留，跟踪下月余额变化",
    ),
    "loss_making": (
        "测算产品定价与资金转移价格（FTP），评估调价或压降成本的空间",
        "评估与同类产品合并的可能，减少低效产品",
        "提交产品退出评估，制定存量客户的迁移与告知方案",
    ),
}
GENERIC_ADVICE = (
    "核实数据口径，分析指标变动的原因和集中机构",
    "与产品主管部门沟通，制定整改措施并跟踪下月指标",
)

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("npl_suspend", "npl_rate", ">=", 3.0, "suspend", title="不良率达到停牌线",
         categories=("loan",), advice=_ADVICE["npl_suspend"]),
    Rule("npl_watch", "npl_rate", ">=", 1.2, "watch", title="不良率进入关注区间", upper=3.0,
         categories=("loan",), advice=_ADVICE["npl_watch"]),
    Rule("overdue_jump", "overdue_rate", ">=", 2.0, "watch", title="逾期率跳升", rise_pct=30.0,
         categories=("loan",), advice=_ADVICE["overdue_jump"]),
    Rule("deposit_drain", "balance_mom", "<=", -20.0, "watch", title="存款余额流失",
         categories=("deposit",), advice=_ADVICE["deposit_drain"]),
    Rule("loss_making", "net_contribution", "<", 0.0, "exit_review", title="持续亏损", months=6,
         statuses=("operating",), advice=_ADVICE["loss_making"]),
)


def advice_for(rule: Rule) -> list[str]:
    """Next steps: the rule's own (from the file), else by the metric it watches."""
    if rule.advice:
        return list(rule.advice)
    by_metric = {"npl_rate": "npl_watch" if rule.level == "watch" else "npl_suspend", "npl_balance": "npl_watch",
                 "overdue_rate": "overdue_jump", "overdue_balance": "overdue_jump",
                 "balance_mom": "deposit_drain", "balance": "deposit_drain", "net_contribution": "loss_making",
                 "net_interest": "loss_making"}
    key = by_metric.get(rule.metric)
    return list(_ADVICE[key]) if key else list(GENERIC_ADVICE)


# --- parsing and validation ------------------------------------------------------------------------


class RuleFileError(Exception):
    """Problems that make a rules file unusable (each message names the rule and key)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _metric_key(value: Any) -> str | None:
    """A metric or fact by key, Chinese name or alias (exact, after normalisation)."""
    if not isinstance(value, str):
        return None
    text = normalize(value)
    defs: list[Metric | Fact] = [*METRICS.values(), *FACTS.values()]
    for d in defs:
        if text in (d.key, normalize(d.name), *(normalize(a) for a in d.aliases)):
            return d.key
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().rstrip("%").replace("％", ""))
        except ValueError:
            return None
    return None


def _names(value: Any, aliases: dict[str, str], rule: str, key: str, errors: list[str]) -> tuple[str, ...] | None:
    """A list of allowed values (category, status, segment) from a string, a `|`/`,` list or a
    YAML list; None for all."""
    items = value if isinstance(value, list) else str(value).replace("，", ",").replace("|", ",").split(",")
    out: list[str] = []
    for item in items:
        text = str(item).strip()
        if text.lower() in _ALL:
            return None
        found = aliases.get(text) or aliases.get(text.lower())
        if found is None:
            errors.append(f"规则 {rule}：{key} 的取值「{text}」无法识别，可用：{'、'.join(sorted(set(aliases.values())))} "
                          f"(unknown {key})")
        else:
            out.append(found)
    return tuple(dict.fromkeys(out)) or None


def _filters(name: str, spec: dict[str, Any], errors: list[str], warnings: list[str]) -> dict[str, Any]:
    """`applies_to` (a category, a list, or a mapping of category/status/segment/products) and the
    same keys at the rule's top level, as Rule fields."""
    raw: dict[str, Any] = {}
    applies = spec.get("applies_to")
    if isinstance(applies, dict):
        for k, v in applies.items():
            if k in _FILTER_KEYS:
                raw[k] = v
            else:
                warnings.append(f"规则 {name}：applies_to 中的未知字段 {k} 已忽略 (unknown key applies_to.{k})")
    elif applies is not None:
        raw["category"] = applies
    for k in _FILTER_KEYS:
        if k in spec:
            raw[k] = spec[k]
    out: dict[str, Any] = {}
    for field_name, keys, aliases in (("categories", ("category", "categories"), _CATEGORY_ALIASES),
                                      ("statuses", ("status", "statuses"), _STATUS_ALIASES),
                                      ("segments", ("segment", "segments"), _SEGMENT_ALIASES)):
        for k in keys:
            if k in raw and raw[k] is not None:
                out[field_name] = _names(raw[k], aliases, name, k, errors)
    if raw.get("products") is not None:
        items = raw["products"] if isinstance(raw["products"], list) else str(raw["products"]).split("|")
        out["products"] = tuple(str(p).strip() for p in items if str(p).strip()) or None
    return out


def _rule(name: str, spec: Any, base: Rule | None, errors: list[str], warnings: list[str]) -> Rule | None:
    """One rule from its YAML mapping, over the default of the same name if there is one."""
    if spec is None:
        spec = {}
    if isinstance(spec, bool):  # `deposit_drain: false` switches a rule off
        spec = {"enabled": spec}
    if not isinstance(spec, dict):
        errors.append(f"规则 {name}：必须是键值映射，而不是 {type(spec).__name__} (rule must be a mapping)")
        return None
    n_errors = len(errors)
    for key in spec:
        if key not in RULE_KEYS:
            warnings.append(f"规则 {name}：未知字段 {key} 已忽略 (unknown key {key})")
    changes: dict[str, Any] = {}
    if "metric" in spec:
        key = _metric_key(spec["metric"])
        if key is None:
            errors.append(f"规则 {name}：metric 的取值「{spec['metric']}」不是已知的指标或事实，"
                          f"可用：{', '.join([*METRICS, *FACTS])} (unknown metric)")
        else:
            changes["metric"] = key
    if "op" in spec:
        op = _OP_ALIASES.get(str(spec["op"]).strip().lower())
        if op is None:
            errors.append(f"规则 {name}：op 的取值「{spec['op']}」无法识别，可用 ≥ > ≤ < 或 >= > <= < (bad op)")
        else:
            changes["op"] = op
    for key in ("threshold", "upper", "rise_pct"):
        if key in spec:
            if spec[key] is None and key != "threshold":
                changes[key] = None
                continue
            number = _number(spec[key])
            if number is None:
                errors.append(f"规则 {name}：{key} 必须是数字，而不是「{spec[key]}」(non-numeric {key})")
            else:
                changes[key] = number
    if "months" in spec:
        months = spec["months"]
        if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= MAX_MONTHS:
            errors.append(f"规则 {name}：months 必须是 1 到 {MAX_MONTHS} 的整数，而不是「{months}」(bad months)")
        else:
            changes["months"] = months
    if "level" in spec:
        level = LEVEL_ALIASES.get(str(spec["level"]).strip())
        if level is None:
            errors.append(f"规则 {name}：level 的取值「{spec['level']}」无法识别，{LEVEL_CHOICES}")
        else:
            changes["level"] = level
    if "enabled" in spec:
        if not isinstance(spec["enabled"], bool):
            errors.append(f"规则 {name}：enabled 必须是 true 或 false，而不是「{spec['enabled']}」(enabled must be a boolean)")
        else:
            changes["enabled"] = spec["enabled"]
    if "title" in spec and spec["title"] is not None:
        changes["title"] = str(spec["title"]).strip()
    if "advice" in spec and spec["advice"] is not None:
        items = spec["advice"] if isinstance(spec["advice"], list) else [spec["advice"]]
        changes["advice"] = tuple(str(a).strip() for a in items if str(a).strip())
    changes.update(_filters(name, spec, errors, warnings))
    if len(errors) > n_errors:
        return None

    if base is None:
        missing = [k for k in ("metric", "threshold") if k not in changes]
        if missing and changes.get("enabled", True):
            errors.append(f"规则 {name}：新规则必须给出 {'、'.join(missing)} (new rule needs {', '.join(missing)})")
            return None
        if missing:  # a new rule that is only switched off: nothing to evaluate
            return None
        metric = definition(changes["metric"])
        rule = Rule(name=name, metric=changes["metric"], op=changes.get("op", ">="),
                    threshold=changes["threshold"], level=changes.get("level", "watch"),
                    categories=metric.categories, origin="file")
        rule = replace(rule, **{k: v for k, v in changes.items() if k not in ("metric", "op", "threshold", "level")})
    else:
        rule = replace(base, **changes, origin="default+file" if changes else base.origin)
        if "metric" in changes and changes["metric"] != base.metric and not any(
                k in changes for k in ("categories",)):
            rule = replace(rule, categories=definition(changes["metric"]).categories)
    if rule.upper is not None and rule.op in (">=", ">") and rule.upper <= rule.threshold:
        errors.append(f"规则 {name}：upper（{fmt_plain(rule.upper)}）必须大于 threshold（{fmt_plain(rule.threshold)}）"
                      f"(upper must exceed threshold)")
        return None
    if not rule.title:
        rule = replace(rule, title=f"{rule.definition.name}{LEVEL_NAMES.get(rule.level, rule.level)}预警")
    return rule


def parse_rules(text: str | None) -> tuple[tuple[Rule, ...], list[str]]:
    """The rules a file's text gives (defaults overridden, added, switched off) and its warnings;
    raises RuleFileError with every problem found when the file cannot be used."""
    errors: list[str] = []
    warnings: list[str] = []
    try:
        doc = yaml.safe_load(text or "")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"第 {mark.line + 1} 行：" if mark is not None else ""
        raise RuleFileError([f"{where}YAML 格式错误：{getattr(exc, 'problem', None) or exc} (malformed YAML)"]) from exc
    if doc is None:
        return DEFAULT_RULES, ["文件为空，使用默认预警规则 (empty file: default rules)"]
    if isinstance(doc, dict) and "rules" in doc:
        for key in doc:
            if key != "rules":
                warnings.append(f"顶层未知字段 {key} 已忽略 (unknown top-level key)")
        body = doc["rules"]
    else:
        body = doc  # the rules themselves, without the `rules:` wrapper
    items: list[tuple[str, Any]] = []
    if isinstance(body, dict):
        items = [(str(k), v) for k, v in body.items()]
    elif isinstance(body, list):
        for i, entry in enumerate(body, 1):
            if not isinstance(entry, dict) or not entry.get("name"):
                errors.append(f"第 {i} 条规则：列表写法的每条规则必须是带 name 的映射 (list entries need a name)")
                continue
            items.append((str(entry["name"]).strip(), {k: v for k, v in entry.items() if k != "name"}))
    elif body is not None:
        raise RuleFileError([f"rules 必须是映射或列表，而不是 {type(body).__name__} (rules must be a mapping or a list)"])

    rules = {r.name: r for r in DEFAULT_RULES}
    seen: set[str] = set()
    for name, spec in items:
        if name in seen:
            errors.append(f"规则 {name}：重复定义 (duplicate rule)")
            continue
        seen.add(name)
        rule = _rule(name, spec, rules.get(name), errors, warnings)
        if rule is not None:
            rules[name] = rule
    if errors:
        raise RuleFileError(errors)
    return tuple(rules.values()), warnings


# --- hot reload ----------------------------------------------------------------------------------


@dataclass
class RuleSet:
    """The rules in force and where they came from; `errors` are the problems of the current
    source when it was refused (the rules then are the ones in force before)."""

    rules: tuple[Rule, ...]
    source: str  # what was read: a path, "bank_files" or "defaults"
    sha256: str
    in_force_from: str  # where the rules in force came from (differs from `source` after a refusal)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    loaded_at: float = 0.0

    @property
    def enabled(self) -> tuple[Rule, ...]:
        return tuple(r for r in self.rules if r.enabled)

    def get(self, name: str) -> Rule | None:
        return next((r for r in self.rules if r.name == name), None)

    def status(self) -> dict[str, Any]:
        """What `puyi alerts list/run` and /api/alerts report about the rules."""
        return {"source": self.source, "in_force_from": self.in_force_from, "sha256": self.sha256,
                "errors": list(self.errors), "warnings": list(self.warnings),
                "enabled": [r.name for r in self.enabled],
                "disabled": [r.name for r in self.rules if not r.enabled]}


_DEFAULT_SHA = hashlib.sha256(b"defaults").hexdigest()
_RACY_SECONDS = 2.0  # a file changed this recently may change again within the same mtime tick


class RuleBook:
    """The rules in force, re-checked on every use: the source is stat'ed (a file) or its stored
    hash read (bank_files), and re-parsed only when it changed. Thread-safe."""

    def __init__(self, rules_file: Path | None = None) -> None:
        self.rules_file = rules_file
        self._lock = threading.Lock()
        self._current = RuleSet(DEFAULT_RULES, "defaults", _DEFAULT_SHA, "defaults")
        self._signature: tuple[Any, ...] | None = None
        self._reported: set[str] = set()

    def reset(self) -> None:
        """Forget everything read so far (back to the defaults)."""
        with self._lock:
            self._current = RuleSet(DEFAULT_RULES, "defaults", _DEFAULT_SHA, "defaults")
            self._signature = None

    def _source(self, conn: psycopg.Connection[Any] | None) -> tuple[str, Path | None]:
        """(label, file) of where rules come from now; file None for bank_files/defaults."""
        if self.rules_file is not None:
            return str(self.rules_file), Path(self.rules_file).expanduser()
        if conn is not None:
            row = conn.execute("SELECT folder FROM imports ORDER BY id DESC LIMIT 1").fetchone()
            if row is not None:
                path = Path(row["folder"]) / RULES_FILE
                if path.is_file():
                    return str(path), path
            stored = conn.execute("SELECT sha256 FROM bank_files WHERE name = %(n)s", {"n": RULES_FILE}).fetchone()
            if stored is not None:
                return "bank_files", None
        return "defaults", None

    def current(self, conn: psycopg.Connection[Any] | None = None) -> RuleSet:
        """The rules in force now (re-read if the source changed since the last use)."""
        label, path = self._source(conn)
        with self._lock:
            if path is not None:
                self._check_file(label, path)
            elif label == "bank_files":
                assert conn is not None
                self._check_stored(conn)
            elif self._signature != ("defaults",):
                self._signature = ("defaults",)
                self._current = RuleSet(DEFAULT_RULES, "defaults", _DEFAULT_SHA, "defaults", loaded_at=time.time())
            return self._current

    def _check_file(self, label: str, path: Path) -> None:
        try:
            st = os.stat(path)
        except OSError as exc:
            signature: tuple[Any, ...] = ("missing", label, type(exc).__name__)
            if signature != self._signature:
                self._signature = signature
                self._refuse(label, "", [f"无法读取预警规则文件 {path}：{exc.strerror or exc} (cannot read the rules file)"])
            return
        # ctime too: it moves on every write and cannot be set back, unlike mtime.
        signature = ("file", label, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        racy = time.time() - st.st_mtime < _RACY_SECONDS
        if signature == self._signature and not racy:
            return
        try:
            data = path.read_bytes()
        except OSError as exc:
            self._signature = signature
            self._refuse(label, "", [f"无法读取预警规则文件 {path}：{exc} (cannot read the rules file)"])
            return
        self._signature = signature
        self._apply(label, data)

    def _check_stored(self, conn: psycopg.Connection[Any]) -> None:
        row = conn.execute("SELECT content, sha256 FROM bank_files WHERE name = %(n)s", {"n": RULES_FILE}).fetchone()
        if row is None:
            return
        signature = ("stored", row["sha256"])
        if signature != self._signature:
            self._signature = signature
            self._apply("bank_files", row["content"].encode("utf-8"))

    def _apply(self, label: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        if sha == self._current.sha256 and label == self._current.source and not self._current.errors:
            return
        try:
            text = data.decode("utf-8-sig")
            rules, warnings = parse_rules(text)
        except UnicodeDecodeError:
            self._refuse(label, sha, ["预警规则文件不是 UTF-8 编码 (not UTF-8)"])
            return
        except RuleFileError as exc:
            self._refuse(label, sha, exc.problems)
            return
        self._current = RuleSet(rules, label, sha, label, [], warnings, time.time())
        for w in warnings:
            log.info("alert rules %s: %s", label, w)

    def _refuse(self, label: str, sha: str, problems: list[str]) -> None:
        previous = self._current
        self._current = RuleSet(previous.rules, label, sha, previous.in_force_from, problems,
                                previous.warnings if not previous.errors else [], time.time())
        key = f"{label}:{sha}:{'|'.join(problems)}"
        if key not in self._reported:
            self._reported.add(key)
            log.error("alert rules %s refused, the rules from %s stay in force: %s", label,
                      previous.in_force_from, "; ".join(problems))


_BOOKS: dict[tuple[str, str], RuleBook] = {}
_BOOKS_LOCK = threading.Lock()


def rulebook(settings: Any) -> RuleBook:
    """The process's rule book for one database and rules-file setting (created on first use)."""
    key = (str(settings.database_url or settings.home), str(settings.alert_rules_file or ""))
    with _BOOKS_LOCK:
        book = _BOOKS.get(key)
        if book is None:
            book = _BOOKS[key] = RuleBook(settings.alert_rules_file)
        return book
