"""Requirement parsing for element plans: a product designer's Chinese description of a new product
idea → `Requirement` (issue 6, step 1).

Pure text work — no database, no LLM. What is recognised:
- category (loan/deposit/intermediary/payment/market) from the product's head noun (经营贷, 定期存款,
  理财, 收单, 票据…): the last category word of the first clause that has one, so 存单质押贷款 is a loan
  and 面向房贷客户的理财 is wealth management;
- segment (interbank > inclusive > retail > corporate, so 小微企业主 is inclusive and 企业员工 retail),
  purpose (the one attached to the head noun — 汽车消费贷款 → 购车 — else the most specific mentioned)
  and a readable product_type derived from them (小微经营贷, 个人消费贷, 三年期定期存款, 大额存单…) for
  text matching against competitor_rates;
- numbers with their units and qualifiers: term in months (3年期, 36个月, 1-3年, 最长5年, 半年, 36期,
  90天, 3 years, 12、24或36个月), amount in yuan (300万, 5万-50万, 起存5万, 1000元起, 三百万, 50w,
  3 million), annual rate in % (不高于4.5%, 年化4%以内, 3.5%-4.2%, 4.5厘, 月息5厘, 日利率0.02%,
  百分之四点五, below 4.5%); when one side is given twice the first explicit bound wins and plain
  values (期限1年、2年或3年) span the options they give; Chinese numerals
  and full-width text (NFKC) are folded first; numbers about something else (年营业收入500万以下,
  成立满2年, 首付30%, 18-60周岁, LPR+50BP) are not read as product terms and the notes say so;
- collateral (信用/抵押/质押/保证, negations such as 免抵押 read as 信用), repayment, channels and the
  target customers phrase (面向…的 / 针对… / 为…提供 / 目标客群为…).

Every reading of a number is explained in `notes` with the designer's own words (「3年期」读作期限
36 个月); contradictions (floor above ceiling, an inverted range, a deposit with collateral, a loan
with 起存金额, an implausible rate or a non-positive amount or term) are explained in `conflicts`.
Anything the text does not say stays None: a later step fills it from similar products.

Limits: one product per description; relative prices (LPR+50BP, 比竞品低0.5个百分点) are noted but
not turned into rates; a number without a unit is read only next to a word that says what it is
(额度 → 元, 利率 → %; 期限36 is left unread); a month number ≤ 12 without 个/期 or a term word is
taken for a date, not a term; days are rounded to whole months.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tools.catalog import CATEGORY_NAMES, SEGMENT_NAMES
from tools.plan_types import Requirement

RATE_CAP = 24.0  # annual %: above it a rate is implausible (民间借贷司法保护上限 of the 2015 rules)

_FIELD_NAMES = {"rate": "年利率", "amount": "金额", "term": "期限"}


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


# --- text preparation: offsets kept, so that notes quote the designer's own words ----------------


class _Mapped:
    """A rewritten copy of a text that remembers, per character, the span of the original it came from."""

    def __init__(self, text: str) -> None:
        self.orig = text
        self.text = text
        self.spans = [(i, i + 1) for i in range(len(text))]

    def sub(self, pattern: re.Pattern[str], repl: Callable[[re.Match[str]], str | None]) -> None:
        out: list[str] = []
        spans: list[tuple[int, int]] = []
        last = 0
        for m in pattern.finditer(self.text):
            new = repl(m)
            if new is None or new == m.group(0) or m.start() == m.end():
                continue
            out.append(self.text[last:m.start()])
            spans.extend(self.spans[last:m.start()])
            span = (self.spans[m.start()][0], self.spans[m.end() - 1][1])
            out.append(new)
            spans.extend([span] * len(new))
            last = m.end()
        out.append(self.text[last:])
        spans.extend(self.spans[last:])
        self.text = "".join(out)
        self.spans = spans

    def quote(self, start: int, end: int) -> str:
        if start >= end:
            return ""
        return self.orig[self.spans[start][0]:self.spans[end - 1][1]].strip()


_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
_CN_SMALL = {"十": 10, "百": 100, "千": 1000}
_CN_BIG = {"万": 10_000, "亿": 100_000_000}
_CN_RUN = re.compile("[零〇一二两三四五六七八九十][零〇一二两三四五六七八九十百千万亿]*(?:点[零〇一二三四五六七八九]+)?")
# A Chinese numeral is a number only before a unit or a range mark (一年期, 三百万, 三到五年), not in
# words (一次性, 三农, 二手车, 五险一金).
_CN_FOLLOW = set("元块年个月期周天日岁厘%wk万亿千百以起至到-~—–、或和及,;。)")
_CN_BEFORE = set("到至-~之")


def cn_value(run: str) -> float | None:
    """A Chinese numeral (三百万, 一亿五千万, 二十四, 三百五, 四点五) → its value; None if it is not one."""
    int_part, _, frac = run.partition("点")
    total = section = 0
    num: int | None = None
    last_unit = 0
    for ch in int_part:
        if ch in _CN_DIGITS:
            if num:  # 一二: two digits in a row are not a numeral
                return None
            num = _CN_DIGITS[ch]
        elif ch in _CN_SMALL:
            last_unit = _CN_SMALL[ch]
            section += (num if num is not None else 1) * last_unit
            num = None
        elif ch in _CN_BIG:
            last_unit = _CN_BIG[ch]
            part = section + (num or 0)
            total = (total + part) * last_unit if last_unit == _CN_BIG["亿"] else total + part * last_unit
            section, num = 0, None
        else:
            return None
    if num is not None:
        # 三百五 / 一万五 (colloquial): the trailing digit counts in tenths of the unit before it
        if len(int_part) >= 2 and int_part[-2] in "百千万亿" and last_unit >= 100:
            section += num * last_unit // 10
        else:
            section += num
    value: float = total + section
    if frac:
        if any(ch not in _CN_DIGITS for ch in frac):
            return None
        value += float("0." + "".join(str(_CN_DIGITS[ch]) for ch in frac))
    return value


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.10g}"


def _cn_repl(m: re.Match[str]) -> str | None:
    run, text = m.group(0), m.string
    after = text[m.end()] if m.end() < len(text) else ""
    before = text[m.start() - 1] if m.start() > 0 else ""
    numeric = len(run) >= 2 and any(ch in run for ch in "十百千万亿点")
    if not (numeric or after in _CN_FOLLOW or after == "" or before in _CN_BEFORE):
        return None
    value = cn_value(run)
    if value is None:
        return None
    for big, size in (("亿", _CN_BIG["亿"]), ("万", _CN_BIG["万"])):
        if run.endswith(big):  # keep 万/亿 as the unit: 三百万 → 300万
            return _num(value / size) + big
    return _num(value)


def _fraction_repl(m: re.Match[str]) -> str:
    base = {"百": 1.0, "千": 0.1, "万": 0.01}[m.group(1)]
    return _num(round(float(m.group(2)) * base, 10)) + "%"


def _half_year_repl(m: re.Match[str]) -> str:
    return f"{int(m.group(1)) * 12 + 6}个月"


_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SPACES = re.compile(r"\s+")
_CJK_SPACE = re.compile(r"\s+(?=[^\x00-\x7f])|(?<=[^\x00-\x7f])\s+")
_UPPER = re.compile(r"[A-Z]+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_FRACTION = re.compile(r"([百千万])分之\s*(\d+(?:\.\d+)?)")
_HALF_YEAR = re.compile(r"(?<![\d上下前后多])半年(?![度报])")
_YEAR_AND_HALF = re.compile(r"(\d+)\s*年半")
# 12、24或36个月: each number of a list takes the unit written after the last one.
_LISTED = re.compile(r"(\d+(?:\.\d+)?)(?=(?:\s*[、或和/]\s*\d+(?:\.\d+)?)+\s*(个月|年期|年|期|亿元?|万元?|元|%|厘))")


def _fold(text: str) -> _Mapped:
    """NFKC (full-width digits and punctuation), one space at most and none next to Chinese."""
    mapped = _Mapped(text)
    mapped.sub(_NON_ASCII, lambda m: unicodedata.normalize("NFKC", m.group(0)))
    mapped.sub(_SPACES, lambda m: " ")
    mapped.sub(_CJK_SPACE, lambda m: "")
    return mapped


def _numeric(mapped: _Mapped) -> None:
    """Lower case, Chinese numerals to digits, 百分之/半年 to plain units: what the number scanner reads."""
    mapped.sub(_UPPER, lambda m: m.group(0).lower())
    mapped.sub(_THOUSANDS, lambda m: "")
    mapped.sub(_CN_RUN, _cn_repl)
    mapped.sub(_FRACTION, _fraction_repl)
    mapped.sub(_HALF_YEAR, lambda m: "6个月")
    mapped.sub(_YEAR_AND_HALF, _half_year_repl)
    mapped.sub(_LISTED, lambda m: m.group(1) + m.group(2))


# --- keyword tables ------------------------------------------------------------------------------
# Each table maps a label to a pattern; `_scan` keeps the longest hit at a position, left to right.

_EN = r"(?<![a-z])"  # English words stand alone
_EN_END = r"(?![a-z])"

_CATEGORY = (
    ("loan", _rx(r"贷款|借款|贷(?!记)|按揭|融资|授信|" + _EN + r"(?:loans?|mortgage|credit line)" + _EN_END)),
    ("deposit", _rx(r"大额存单|定期存款|活期存款|通知存款|结构性存款|存款|存单|定期(?!还)|定存|整存整取|零存整取"
                    r"|储蓄(?!国债)|" + _EN + r"(?:deposits?|savings|cds?)" + _EN_END)),
    ("intermediary", _rx(r"理财|代销|基金|保险|储蓄国债|国债|贵金属|信托|" + _EN
                         + r"(?:wealth management|funds?|insurance)" + _EN_END)),
    ("payment", _rx(r"支付|收单|结算|" + _EN + r"(?:payments?|acquiring|settlement)" + _EN_END)),
    ("market", _rx(r"同业存单|同业存款|同业拆借|同业|票据|贴现|债券|回购|拆借|" + _EN
                   + r"(?:interbank|bonds?|bills?)" + _EN_END)),
)

# Checked in this order: the first group with a hit decides.
_SEGMENT = (
    ("interbank", _rx(r"同业|金融机构|" + _EN + r"interbank" + _EN_END)),
    ("inclusive", _rx(r"小微企业|中小企业|小型企业|小微|普惠|个体工商户|个体户|企业主|小企业|微型企业|农户|商户|家庭农场|合作社|" + _EN
                      + r"(?:smes?|small business(?:es)?|micro)" + _EN_END)),
    ("retail", _rx(r"个人|零售|居民|工薪|新市民|老年|老人|员工|职工|代发|白领|公务员|储户|家庭|大学生|青年|" + _EN
                   + r"(?:personal|retail|consumers?|individuals?)" + _EN_END)),
    ("corporate", _rx(r"对公|企业|公司|单位|法人|集团|" + _EN + r"(?:corporate|company|companies|enterprises?)"
                      + _EN_END)),
)

# Most specific first: when no purpose is attached to the head noun, the first of these mentioned wins.
_PURPOSE = (
    ("租房", _rx(r"租房|房租|租赁住房|" + _EN + r"rent(?:al|ing)?" + _EN_END)),
    ("购房", _rx(r"住房(?!公积金)|购房|房贷|按揭|首套|二套|" + _EN + r"(?:mortgage|home loan|housing)" + _EN_END)),
    ("购车", _rx(r"购车|汽车|车贷|买车|二手车|车辆|" + _EN + r"(?:car|auto)" + _EN_END)),
    ("装修", _rx(r"装修|家装|装潢|" + _EN + r"renovation" + _EN_END)),
    ("教育", _rx(r"教育|助学|留学|学费|" + _EN + r"(?:education|student)" + _EN_END)),
    ("农业", _rx(r"农业|涉农|三农|农户|种植|养殖|乡村振兴|农村|" + _EN + r"(?:farm\w*|agri\w*)")),
    ("科创", _rx(r"科创|科技|专精特新|知识产权|高新技术|" + _EN + r"tech\w*")),
    ("绿色", _rx(r"绿色|低碳|碳减排|新能源|光伏|" + _EN + r"green" + _EN_END)),
    ("养老", _rx(r"养老|退休|" + _EN + r"(?:pension|retire\w*)")),
    ("医疗", _rx(r"医疗|医美|健康|" + _EN + r"medical" + _EN_END)),
    ("旅游", _rx(r"旅游|旅行|" + _EN + r"travel" + _EN_END)),
    ("创业", _rx(r"创业|" + _EN + r"startups?" + _EN_END)),
    ("贸易", _rx(r"贸易|进出口|外贸|跨境|" + _EN + r"trade" + _EN_END)),
    ("消费", _rx(r"消费|" + _EN + r"(?:consumers?|consumption)" + _EN_END)),
    ("经营", _rx(r"经营|生产|周转|流动资金|备货|进货|" + _EN + r"(?:business|working capital)" + _EN_END)),
)
_HEAD_NOUN = re.compile(r"(?:性|类)?(?:消费)?(?:贷款|贷|借款|分期|按揭|存款|存单|理财|储蓄|保险|基金)")

_NEGATED = r"(?<![免无需不要用])"
_COLLATERAL = (
    ("信用", _rx(r"纯信用|(?<!社会)信用(?!卡|记录|良好|状况|评级|等级|报告|分|风险|较好|优良|不良|历史|记录)"
                 r"|免抵押|免担保|免抵押担保|无抵押|无担保|无需抵押|无需担保|不需要抵押|不需要担保|不需抵押|不用抵押"
                 r"|" + _EN + r"(?:unsecured|credit-based)" + _EN_END)),
    ("抵押", _rx(_NEGATED + r"抵押(?!率)|房抵|" + _EN + r"(?:secured|collateral)" + _EN_END)),
    ("质押", _rx(r"质押(?!率)|" + _EN + r"pledged?" + _EN_END)),
    ("保证", _rx(r"保证(?!金|收益|本金|本息|按时)|" + _NEGATED + r"担保|" + _EN + r"guarante\w*")),
)

_REPAYMENT = (
    ("等额本息", _rx(r"等额本息|" + _EN + r"(?:equal (?:monthly )?instal?lments?|annuity)" + _EN_END)),
    ("等额本金", _rx(r"等额本金|" + _EN + r"equal principal" + _EN_END)),
    ("先息后本", _rx(r"先息后本|按[月季]付息[,、]?到期(?:一次性?)?还本|按[月季]付息|" + _EN + r"interest[- ]only"
                     + _EN_END)),
    ("随借随还", _rx(r"随借随还|随用随还|循环使用|循环额度|" + _EN + r"revolving" + _EN_END)),
    ("到期一次还本付息", _rx(r"到期一次性?还本付息|一次性还本付息|利随本清|到期还本付息|" + _EN + r"bullet"
                             + _EN_END)),
    ("到期还本", _rx(r"到期(?:一次性?)?还本")),
    ("气球贷", _rx(r"气球贷|弹性还款|" + _EN + r"balloon" + _EN_END)),
    ("分期还款", _rx(r"分期还款|按期还款|分期偿还|按月还款")),
)

_CHANNELS = (
    ("线上", _rx(r"全流程线上|纯线上|线上|在线|网上办理|互联网|" + _EN + r"(?:online|digital)" + _EN_END)),
    ("手机银行", _rx(r"手机银行|掌上银行|掌银|手机app|" + _EN + r"(?:app|mobile banking|mobile app)" + _EN_END)),
    ("网银", _rx(r"网上银行|企业网银|个人网银|网银|" + _EN + r"(?:online banking|internet banking|e-banking)"
                 + _EN_END)),
    ("小程序", _rx(r"微信小程序|小程序|" + _EN + r"mini ?programs?" + _EN_END)),
    ("微信银行", _rx(r"微信银行|公众号|微信")),
    ("网点", _rx(r"营业网点|网点|营业厅|支行|" + _EN + r"branch(?:es)?" + _EN_END)),
    ("柜面", _rx(r"柜面|柜台|" + _EN + r"counters?" + _EN_END)),
    ("线下", _rx(r"线下|" + _EN + r"offline" + _EN_END)),
    ("客户经理", _rx(r"客户经理|上门|" + _EN + r"relationship managers?" + _EN_END)),
    ("电话银行", _rx(r"电话银行")),
)

_START_WORDS = re.compile(r"起存|起购|起投")
_TARGET_TRIGGER = re.compile(r"面向|针对|适用于|服务于|专为|目标客[户群](?:为|是)?:?|客群(?:为|是):?|客户群体(?:为|是)?:?"
                             r"|为(?=[^,;。!?]{1,20}(?:提供|设计|打造|推出|定制))")
_TARGET_STOP = re.compile(r"推出|设计|提供|打造|定制|开发|发行|办理|设立|新设|上线")
_PRODUCT_NOUN = re.compile(r"贷款|借款|贷|按揭|存款|存单|定期|储蓄|理财|基金|保险|收单|支付|结算|票据|债券|产品|业务")
_CLAUSE_SPLIT = re.compile(r"[,;。!?\n]|\.(?!\d)")


@dataclass
class _Hit:
    start: int
    end: int
    label: str
    word: str


def _scan(text: str, table: Iterable[tuple[str, re.Pattern[str]]]) -> list[_Hit]:
    """Every hit of every label, left to right; at one position the longest wins and overlaps drop."""
    hits = [_Hit(m.start(), m.end(), label, m.group(0)) for label, rx in table for m in rx.finditer(text)]
    hits.sort(key=lambda h: (h.start, h.start - h.end))
    out: list[_Hit] = []
    for h in hits:
        if not out or h.start >= out[-1].end:
            out.append(h)
    return out


def _ordered_labels(hits: list[_Hit]) -> list[str]:
    return list(dict.fromkeys(h.label for h in hits))


def _clauses(text: str) -> list[tuple[int, int]]:
    out, start = [], 0
    for m in _CLAUSE_SPLIT.finditer(text):
        out.append((start, m.start()))
        start = m.end()
    out.append((start, len(text)))
    return [c for c in out if c[1] > c[0]]


# --- the number scanner --------------------------------------------------------------------------

_N = r"(?P<a>\d+(?:\.\d+)?)"
_N2 = r"(?P<b>\d+(?:\.\d+)?)"
_SEP = r"\s*(?:--?|~|——?|–|至|到|to(?![a-z])|and(?![a-z]))\s*"
_AU = (r"(?:亿元?|千万元?|百万元?|万元?|千元|千|百元|元|块钱?|w(?![a-z])|k(?![a-z])|\s*million(?![a-z])"
       r"|\s*thousand(?![a-z])|\s*(?:yuan|rmb|cny)(?![a-z]))(?![户人家笔次张台辆名位份])")
_TU = (r"(?:个月期?|个?自然月|月期|年期|周年|年(?!化|龄|满|薪|收入|营|利|息|度|初|底|末|份|\d)|期(?!限|间|望)"
       r"|天|月(?![\d份底末初利息薪收])|\s*-?\s*(?:months?|mos?|years?|yrs?|days?)(?![a-z]))")
_RU = r"(?:%|厘|\s*percent(?![a-z])|\s*pct(?![a-z]))"
_SPREAD = r"(?:\s*bps?(?![a-z])|个?基点|个百分点)"
_OTHER = (r"(?:周岁|岁|小时|分钟|秒|人|户|家|笔|次|倍|张|台|辆|名|位|份|平方米?|m2|公里|km|个(?!月|自然月)|款|项|条"
          r"|类|星|级|号|:\d)")

# Tried in this order at each number; the first that matches takes the text.
_SCANNERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("other", re.compile(rf"{_N}(?:{_SEP}{_N2})?\s*[万千亿百]?\s*{_OTHER}")),
    ("amount", re.compile(rf"{_N}\s*(?P<u1>{_AU})?{_SEP}{_N2}\s*(?P<u2>{_AU})")),
    ("term", re.compile(rf"{_N}\s*(?P<u1>{_TU})?{_SEP}{_N2}\s*(?P<u2>{_TU})")),
    ("rate", re.compile(rf"{_N}\s*(?P<u1>{_RU})?{_SEP}{_N2}\s*(?P<u2>{_RU})")),
    ("spread", re.compile(rf"{_N}{_SPREAD}")),
    ("amount", re.compile(rf"{_N}\s*(?P<u1>{_AU})")),
    ("term", re.compile(rf"{_N}\s*(?P<u1>{_TU})")),
    ("rate", re.compile(rf"{_N}\s*(?P<u1>{_RU})")),
    ("bare", re.compile(rf"{_N}{_SEP}{_N2}(?![\d.])")),
    ("bare", re.compile(_N)),
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_UNIT_CHARS = set("%万亿千百元块年月天期厘wk")


@dataclass
class _Qty:
    kind: str
    lo: float
    hi: float | None  # the upper end of a range; None for one number
    u1: str
    u2: str
    start: int
    end: int


def _quantities(s: str) -> list[_Qty]:
    out: list[_Qty] = []
    pos = 0
    while m := _NUMBER.search(s, pos):
        sign = 1.0
        j = m.start() - 1
        # 负 or a minus that does not join two numbers (5万-50万 is a range, 利率-1% a sign)
        if j >= 0 and (s[j] == "负" or (s[j] == "-" and (j == 0 or not (s[j - 1].isdigit()
                                                                         or s[j - 1] in _UNIT_CHARS)))):
            sign = -1.0
        for kind, rx in _SCANNERS:
            hit = rx.match(s, m.start())
            if hit is None:
                continue
            groups = hit.groupdict()
            u2 = (groups.get("u2") or "").strip()
            u1 = (groups.get("u1") or "").strip() or u2
            b = groups.get("b")
            out.append(_Qty(kind, sign * float(hit.group("a")), float(b) if b else None, u1, u2,
                            m.start() - (1 if sign < 0 else 0), hit.end()))
            pos = hit.end()
            break
        else:  # pragma: no cover - the last scanner matches any number
            pos = m.end()
    return out


# Context words: which field a number is about, and which numbers are about something else.
_CONTEXT = {
    "rate": _rx(r"利率|年化|利息|息|定价|收益|价格|" + _EN + r"(?:rates?|apr|yield|interest|pricing)" + _EN_END),
    "amount": _rx(r"额度|金额|起存|起购|起投|起贷|授信|借款|可贷|贷|单笔|单户|存入|限额|" + _EN
                  + r"(?:amount|limit|loan|up to)" + _EN_END),
    "term": _rx(r"期限|为期|存期|贷期|期|" + _EN + r"(?:term|tenor|maturity)" + _EN_END),
}
_NOT_ABOUT = {
    "rate": _rx(r"不良|逾期|首付|比例|成数|抵押率|质押率|费率|手续费|费用|占比|增长|增速|同比|环比|违约|损失|" + _EN
                + r"(?:fee|npl|ltv|down payment|share)" + _EN_END),
    "amount": _rx(r"年营业收入|营业收入|年收入|收入|营收|营业额|流水|资产|注册资本|纳税|工资|薪|销售|产值|市值|日均|手续费|费用|年费|" + _EN
                  + r"(?:fee|income|revenue|assets?|turnover|salary)" + _EN_END),
    "term": _rx(r"成立|注册|满|经营(?!性?类?贷)|从业|工龄|工作|年龄|近|过去|连续|缴纳|缴存|社保|公积金|纳税|已|持续"
                r"|运营|" + _EN + r"(?:history|age|old)" + _EN_END),
}
_ABOUT_WHAT = {"rate": "利率", "amount": "金额", "term": "期限"}

_MAX_WORDS = _rx(r"不高于|不超过|不大于|不多于|不得高于|不得超过|最高|最多|至多|上限|封顶|低于|少于|小于|最长|以内|之内|以下"
                 r"|可达|控制在|≤|<=|<|" + _EN + r"(?:below|under|at most|up to|no more than|not more than"
                 r"|not exceed(?:ing)?|no higher than|max(?:imum)?|less than|within|capped at)" + _EN_END)
_MIN_WORDS = _rx(r"不低于|不少于|不小于|不得低于|最低|最少|至少|下限|高于|大于|多于|超过|最短|起存|起购|起投|起贷|低至|保底"
                 r"|≥|>=|>|" + _EN + r"(?:at least|no less than|not less than|no lower than|above|over|more than"
                 r"|min(?:imum)?)" + _EN_END)
_APPROX_WORDS = _rx(r"左右|大约|大概|约|" + _EN + r"(?:around|about|approximately)" + _EN_END)
_QUALIFIERS = (("max", _MAX_WORDS), ("min", _MIN_WORDS), ("approx", _APPROX_WORDS))
_SUFFIX_MAX = _rx(r"\s*(?:以内|之内|以下|及以下|或以下|内|封顶|为上限|为限|or less|or below|and below|at most|max"
                  + _EN_END + ")")
_SUFFIX_MIN = _rx(r"\s*(?:以上|及以上|或以上|起步|起存|起购|起投|起贷|起|为下限|保底|or more|or above|and above"
                  r"|at least|min" + _EN_END + r"|\+)")
_SUFFIX_APPROX = _rx(r"\s*(?:左右|上下)")
_LPR_BEFORE = _rx(r"lpr\s*(?:[+-]|加|减)?\s*$")
_MONTHLY = _rx(r"月息|月利率|月利息|月费率|monthly")
_DAILY = _rx(r"日息|日利率|日利息|daily")
_PERIOD = _rx(r"月息|月利率|月利息|月费率|monthly|日息|日利率|日利息|daily")


def _last_hit(text: str, rx: re.Pattern[str]) -> re.Match[str] | None:
    last = None
    for m in rx.finditer(text):
        last = m
    return last


def _latest(text: str, rx: re.Pattern[str]) -> int:
    """End of the last hit of rx in text, -1 if none."""
    m = _last_hit(text, rx)
    return m.end() if m else -1


def _amount_factor(unit: str) -> float:
    for prefix, factor in (("亿", 1e8), ("千万", 1e7), ("百万", 1e6), ("万", 1e4), ("千", 1e3), ("百", 1e2),
                           ("w", 1e4), ("k", 1e3), ("million", 1e6), ("thousand", 1e3)):
        if unit.startswith(prefix):
            return factor
    return 1.0


def _term_months(value: float, unit: str) -> float:
    u = unit.lstrip("- ")
    if u.startswith(("年", "周年", "year", "yr")):
        return value * 12
    if u.startswith(("天", "day")):
        return value / 30
    return value


def _yuan(v: float) -> str:
    return f"{v:,.0f} 元" if float(v).is_integer() else f"{v:,.2f} 元"


def _pct(v: float) -> str:
    return f"{round(v, 4):g}%"


def _show(kind: str, v: float) -> str:
    return _yuan(v) if kind == "amount" else f"{v:g} 个月" if kind == "term" else _pct(v)


def _show_range(kind: str, lo: float, hi: float) -> str:
    if kind == "amount":
        return f"{_yuan(lo).removesuffix(' 元')}–{_yuan(hi)}"
    if kind == "term":
        return f"{lo:g}–{hi:g} 个月"
    return f"{_pct(lo).removesuffix('%')}–{_pct(hi)}"


@dataclass
class _Bound:
    value: float
    quote: str
    strong: bool  # said as a bound or a range (不高于, 1-3年), not read from one plain number


class _Reader:
    """Turns the scanned numbers into bounds per field and side, with a note for each reading."""

    def __init__(self, mapped: _Mapped, category: str | None) -> None:
        self.m = mapped
        self.s = mapped.text
        self.category = category
        self.notes: list[str] = []
        self.conflicts: list[str] = []
        self.bounds: dict[tuple[str, str], list[_Bound]] = {}
        self.inverted: set[str] = set()
        self._spanned: set[str] = set()
        clauses = _clauses(self.s)
        self._clause_starts = [c[0] for c in clauses] or [0]
        self._clause_ends = [c[1] for c in clauses] or [len(self.s)]

    def _clause(self, pos: int) -> tuple[int, int]:
        i = max(0, bisect.bisect_right(self._clause_starts, pos) - 1)
        return self._clause_starts[i], self._clause_ends[i]

    def read(self) -> None:
        prev_end = 0
        for q in _quantities(self.s):
            c_start, c_end = self._clause(q.start)
            p_start = max(c_start, prev_end) if prev_end <= q.start else c_start
            prefix = self.s[p_start:q.start]
            prev_end = q.end
            self._one(q, prefix, p_start, c_end)

    def _one(self, q: _Qty, prefix: str, p_start: int, c_end: int) -> None:
        raw = self.m.quote(q.start, q.end)
        if q.kind == "other":
            return
        if q.kind == "spread":
            self.notes.append(f"「{self.m.quote(max(p_start, q.start - 6), q.end)}」是相对基准的加减点，"
                              "需结合 LPR 或竞品报价，未换算为利率")
            return
        kind: str | None = q.kind
        if kind == "bare":
            kind = self._bare_kind(prefix)
        if kind is None:
            return
        if q.kind == "bare" and kind == "term":
            self.notes.append(f"「{raw}」未写期限单位（年或月），未读取")
            return
        about = _latest(prefix, _CONTEXT[kind])
        other = _last_hit(prefix, _NOT_ABOUT[kind])
        if other is not None and other.end() > about:
            # quote from the first of the words that say what the number is about (成立满2年, 首付比例)
            first = next(m for m in _NOT_ABOUT[kind].finditer(prefix) if m.start() >= about)
            self.notes.append(f"「{self.m.quote(p_start + first.start(), q.end)}」说的不是产品的{_ABOUT_WHAT[kind]}，"
                              "视为准入条件、费用或其他说明，未读作产品要素")
            return
        if kind == "rate" and _LPR_BEFORE.search(prefix):
            self.notes.append(f"「{self.m.quote(max(p_start, q.start - 6), q.end)}」是相对 LPR 的加减点，未换算为利率")
            return
        period = _last_hit(prefix, _PERIOD) if kind == "rate" else None
        values = [q.lo] if q.hi is None else [q.lo, q.hi]
        units = [q.u1] if q.hi is None else [q.u1, q.u2]
        how: list[str] = []
        if kind == "rate":
            values = [self._rate(v, u, prefix, how) for v, u in zip(values, units, strict=True)]
            if q.kind == "bare":
                how.append("未写 %，按年利率百分数读取")
        elif kind == "amount":
            values = [v * _amount_factor(u) for v, u in zip(values, units, strict=True)]
            if q.kind == "bare" or not q.u1:
                how.append("未写单位，按元读取")
        else:
            if any(u.startswith("年") and v >= 1900 for v, u in zip(values, units, strict=True)):
                return  # a calendar year (2026年), not a term
            if q.hi is None and q.u1 == "月" and q.lo <= 12 and _latest(prefix, _CONTEXT["term"]) < 0:
                return  # 3月 without 个 or a term word: a month of the year
            if any(u.startswith("期") for u in units):
                how.append("按月分期读作月数")
            if any(u.startswith(("天", "day")) for u in units):
                how.append("按 30 天一个月折算" + ("，不足一个月按 1 个月计" if min(values) < 30 else ""))
            values = [float(max(1, round(_term_months(v, u))) if v > 0 else round(_term_months(v, u)))
                      for v, u in zip(values, units, strict=True)]
        said_from = p_start + period.start() if period else None
        self._place(q, kind, values, prefix, p_start, c_end, how, said_from)

    def _bare_kind(self, prefix: str) -> str | None:
        best, kind = -1, None
        for k, rx in _CONTEXT.items():
            pos = _latest(prefix, rx)
            if pos > best:
                best, kind = pos, k
        return kind

    def _rate(self, v: float, unit: str, prefix: str, how: list[str]) -> float:
        li = unit.startswith("厘")
        if _MONTHLY.search(prefix):
            how.append("月利率按 12 个月折成年利率" + ("，月息 1 厘 = 0.1%" if li else ""))
            return round(v * (0.1 if li else 1.0) * 12, 6)
        if _DAILY.search(prefix):
            how.append("日利率按 365 天折成年利率" + ("，日息 1 厘 = 0.01%" if li else ""))
            return round(v * (0.01 if li else 1.0) * 365, 6)
        if li:
            how.append("「厘」按年息读作百分数（年息 1 厘 = 1%）")
        return v

    def _place(self, q: _Qty, kind: str, values: list[float], prefix: str, p_start: int, c_end: int,
               how: list[str], said_from: int | None = None) -> None:
        q_start, q_end = q.start, q.end
        side: str
        if len(values) == 2:
            side = "range"
        else:
            tail = self.s[q.end:c_end]
            side = ""
            for rx, name in ((_SUFFIX_MAX, "max"), (_SUFFIX_MIN, "min"), (_SUFFIX_APPROX, "approx")):
                hit = rx.match(tail)
                if hit:
                    side, q_end = name, q.end + hit.end()
                    break
            if not side:
                found = _scan(prefix, _QUALIFIERS)
                if found:
                    side, q_start = found[-1].label, p_start + found[-1].start
        if said_from is not None:
            q_start = min(q_start, said_from)
        quote = self.m.quote(q_start, q_end)
        label = _FIELD_NAMES[kind]
        extra = f"（{'；'.join(how)}）" if how else ""
        if side == "range":
            lo, hi = values
            self._add(kind, "min", lo, quote, True)
            self._add(kind, "max", hi, quote, True)
            self.notes.append(f"「{quote}」读作{label} {_show_range(kind, lo, hi)}{extra}")
            if lo > hi:
                self.inverted.add(kind)
                self.conflicts.append(f"{label}区间「{quote}」前大后小（{_show(kind, lo)} > {_show(kind, hi)}），下限高于上限，"
                                      "疑为写反，请确认")
            return
        v = values[0]
        if side in ("max", "min"):
            self._add(kind, side, v, quote, True)
            self.notes.append(f"「{quote}」读作{label}{'上限' if side == 'max' else '下限'} {_show(kind, v)}{extra}")
        elif kind == "amount":
            # One plain amount: a loan's 额度 is a ceiling, a deposit's or a wealth product's a minimum.
            side = "min" if self.category in ("deposit", "intermediary") else "max"
            self._add(kind, side, v, quote, False)
            what = "按存款/理财读作起存（起购）金额" if side == "min" else "按额度读作金额上限"
            self.notes.append(f"「{quote}」未写上限或下限，{what} {_show(kind, v)}{extra}")
        else:
            self._add(kind, "min", v, quote, False)
            self._add(kind, "max", v, quote, False)
            target = "目标" if side == "approx" else ""
            self.notes.append(f"「{quote}」读作{target}{label} {_show(kind, v)}{extra}")

    def _add(self, kind: str, side: str, value: float, quote: str, strong: bool) -> None:
        self.bounds.setdefault((kind, side), []).append(_Bound(value, quote, strong))

    def bound(self, kind: str, side: str) -> float | None:
        """The value for one side of a field: the first bound said as such (不高于, 1-3年) wins; plain
        values alone (期限1年、2年或3年) span the options they give."""
        found = self.bounds.get((kind, side), [])
        if not found:
            return None
        strong = [b for b in found if b.strong]
        label, which = _FIELD_NAMES[kind], "上限" if side == "max" else "下限"
        if not strong:
            values = sorted({b.value for b in found})
            if len(values) > 1 and kind not in self._spanned:
                self._spanned.add(kind)
                said = "」「".join(dict.fromkeys(b.quote for b in found))
                self.notes.append(f"{label}给了多个值（「{said}」），读作可选范围")
            return values[-1] if side == "max" else values[0]
        chosen = strong[0]
        for b in found:
            if b is not chosen and b.value != chosen.value:
                self.notes.append(f"{label}{which}前后给了不同的值（「{chosen.quote}」「{b.quote}」），"
                                  f"取「{chosen.quote}」")
        return chosen.value


# --- what the words say ---------------------------------------------------------------------------


def _category(text: str, notes: list[str]) -> str | None:
    hits = _scan(text, _CATEGORY)
    if not hits:
        return None
    chosen: _Hit | None = None
    for start, end in _clauses(text):
        inside = [h for h in hits if start <= h.start < end]
        if inside:
            chosen = inside[-1]
            break
    assert chosen is not None
    others = [h for h in hits if h.label != chosen.label]
    if others:
        said = "」「".join(dict.fromkeys(h.word for h in hits))
        notes.append(f"文中同时出现「{said}」，按产品名的中心词「{chosen.word}」读作"
                     f"{CATEGORY_NAMES[chosen.label]}")
    return chosen.label


def _segment(text: str, notes: list[str]) -> str | None:
    found: list[tuple[str, str]] = []
    for label, rx in _SEGMENT:
        hits = list(rx.finditer(text))
        if hits:
            found.append((label, hits[0].group(0)))
            for h in hits:  # 小微企业 is not also 企业
                text = text[:h.start()] + " " * (h.end() - h.start()) + text[h.end():]
    if not found:
        return None
    label, word = found[0]
    if len(found) > 1:
        others = "、".join(f"「{w}」" for _, w in found[1:])
        notes.append(f"客群按「{word}」读作{SEGMENT_NAMES[label]}（文中还提到{others}）")
    return label


def _purpose(text: str, notes: list[str], target: tuple[int, int] | None,
             category: str | None) -> tuple[str | None, set[str]]:
    """The product's purpose, and every purpose word said (涉农 customers make a 涉农经营贷)."""
    every = _scan(text, _PURPOSE)
    # 面向房贷客户的理财: words that describe the customers are not the product's purpose — unless
    # nothing else is said about a loan's use (面向有购车需求的客户的贷款).
    hits = [h for h in every if target is None or not target[0] <= h.start < target[1]]
    if not hits and category == "loan":
        hits = every
    labels = {h.label for h in every}
    if not hits:
        return None, labels
    head = next((h for h in hits if "贷" in h.word or _HEAD_NOUN.match(text, h.end)), None)
    if head is not None:
        chosen = head.label
    else:
        chosen = next(label for label, _ in _PURPOSE if label in labels)
    rest = [label for label in _ordered_labels(hits) if label != chosen]
    if rest:
        notes.append(f"用途读作「{chosen}」（文中还提到：{'、'.join(rest)}）")
    return chosen, labels


def _joined(text: str, table: Iterable[tuple[str, re.Pattern[str]]]) -> str | None:
    labels = _ordered_labels(_scan(text, table))
    return "、".join(labels) if labels else None


def _target(text: str) -> tuple[str, int, int] | None:
    """The target customers phrase and where it is in the text."""
    m = _TARGET_TRIGGER.search(text)
    if m is None:
        return None
    end = next((c_end for c_start, c_end in _clauses(text) if c_start <= m.end() <= c_end), len(text))
    seg = text[m.end():end]
    stop = _TARGET_STOP.search(seg)
    if stop:
        seg = seg[:stop.start()]
    # 面向A的B贷: the customers end at the last 的 that a product noun follows.
    cut = None
    for d in re.finditer("的", seg):
        if _PRODUCT_NOUN.search(seg, d.end()):
            cut = d.start()
    if cut is not None:
        seg = seg[:cut]
    start = m.end() + len(seg) - len(seg.lstrip(" :"))
    seg = seg.strip(" :的")
    return (seg, start, start + len(seg)) if seg else None


_CN_YEARS = {1: "一", 2: "二", 3: "三", 4: "四", 5: "五", 6: "六", 7: "七", 8: "八", 9: "九", 10: "十"}
_CN_MONTHS = {1: "一", 2: "两", 3: "三", 6: "六", 9: "九"}


def _term_phrase(months: int) -> str:
    if months % 12 == 0 and months // 12 in _CN_YEARS:
        return f"{_CN_YEARS[months // 12]}年期"
    if months in _CN_MONTHS:
        return f"{_CN_MONTHS[months]}个月"
    return f"{months}个月"


def _loan_type(segment: str | None, purpose: str | None, purposes: set[str]) -> str:
    who = {"inclusive": "小微", "retail": "个人", "corporate": "企业", "interbank": "同业"}.get(segment or "", "")
    if "农业" in purposes and purpose in (None, "经营", "农业"):
        return "涉农企业贷款" if segment == "corporate" else "涉农经营贷"
    fixed = {"购房": "个人住房贷款", "购车": "个人汽车贷款", "装修": "个人装修贷款", "教育": "个人教育贷款",
             "租房": "个人租房贷款", "消费": "个人消费贷"}
    if purpose in fixed:
        return fixed[purpose]
    if purpose == "经营":
        return {"inclusive": "小微经营贷", "retail": "个人经营贷", "corporate": "企业流动资金贷款"}.get(segment or "",
                                                                                                  "经营贷")
    if purpose == "科创":
        return "小微科创贷" if segment == "inclusive" else "科技企业贷款"
    if purpose:
        return f"{who or '个人'}{purpose}贷款"
    return {"inclusive": "小微企业贷款", "retail": "个人贷款", "corporate": "企业贷款",
            "interbank": "同业借款"}.get(segment or "", "贷款")


def _deposit_type(text: str, segment: str | None, purpose: str | None,
                  term: tuple[int | None, int | None]) -> str:
    for word in ("大额存单", "结构性存款", "通知存款"):
        if word in text:
            return word
    if "活期" in text:
        return "活期存款"
    lo, hi = term
    if purpose == "养老":
        return "养老储蓄存款"
    if re.search(r"定期|整存整取|定存|存单|零存整取", text) or lo is not None or hi is not None:
        if lo is not None and lo == hi and lo > 0:
            return f"{_term_phrase(lo)}定期存款"
        return "定期存款"
    return {"corporate": "单位存款", "interbank": "同业存款"}.get(segment or "", "个人存款" if segment else "存款")


def _product_type(text: str, category: str | None, segment: str | None, purpose: str | None,
                  purposes: set[str], term: tuple[int | None, int | None]) -> str | None:
    if category == "loan":
        return _loan_type(segment, purpose, purposes)
    if category == "deposit":
        return _deposit_type(text, segment, purpose, term)
    if category == "intermediary":
        for word, name in (("基金", "代销基金"), ("保险", "代销保险"), ("国债", "储蓄国债"), ("贵金属", "代销贵金属"),
                           ("信托", "代销信托")):
            if word in text:
                return name
        return f"{purpose}理财" if purpose in ("养老", "绿色") else "理财产品"
    if category == "payment":
        for word, name in (("收单", "收单服务"), ("代发", "代发工资"), ("结算", "支付结算")):
            if word in text:
                return name
        return "支付服务"
    if category == "market":
        for pattern, name in ((r"票据|贴现", "票据贴现"), (r"同业存单", "同业存单"), (r"债券", "债券投资"),
                              (r"拆借", "同业拆借"), (r"回购", "债券回购")):
            if re.search(pattern, text):
                return name
        return "同业业务"
    return None


# --- constraints that cannot hold ----------------------------------------------------------------


def _check(req: Requirement, reader: _Reader, text: str) -> None:
    conflicts = req.conflicts
    if req.rate_min is not None and req.rate_max is not None and req.rate_min > req.rate_max \
            and "rate" not in reader.inverted:
        conflicts.append(f"利率下限 {_pct(req.rate_min)} 高于利率上限 {_pct(req.rate_max)}，没有利率能同时满足两者")
    if req.amount_min is not None and req.amount_max is not None and req.amount_min > req.amount_max \
            and "amount" not in reader.inverted:
        conflicts.append(f"金额下限 {_yuan(req.amount_min)} 高于金额上限 {_yuan(req.amount_max)}，没有金额能同时满足两者")
    if req.term_min_months is not None and req.term_max_months is not None \
            and req.term_min_months > req.term_max_months and "term" not in reader.inverted:
        conflicts.append(f"期限下限 {req.term_min_months} 个月长于期限上限 {req.term_max_months} 个月，"
                         "没有期限能同时满足两者")
    rates = [("下限", req.rate_min), ("上限", req.rate_max)]
    if req.rate_min is not None and req.rate_min == req.rate_max:
        rates = [("", req.rate_min)]
    for which, r in rates:
        if r is None:
            continue
        if r > RATE_CAP:
            conflicts.append(f"年利率{which} {_pct(r)} 高于 {RATE_CAP:g}%，超出合理区间（民间借贷司法保护上限曾为 "
                             f"{RATE_CAP:g}%，现为一年期 LPR 的 4 倍；银行产品远低于此），疑为笔误")
        elif r <= 0:
            conflicts.append(f"年利率{which} {_pct(r)} 不大于 0，不是有效的利率")
    for which, a in (("下限", req.amount_min), ("上限", req.amount_max)):
        if a is not None and a <= 0:
            conflicts.append(f"金额{which} {_yuan(a)} 不大于 0，不是有效的金额")
    for which, t in (("下限", req.term_min_months), ("上限", req.term_max_months)):
        if t is not None and t <= 0 and not (which == "上限" and t == req.term_min_months):
            conflicts.append(f"期限{which} {t} 个月不大于 0，不是有效的期限")
    if req.category == "deposit" and req.collateral:
        conflicts.append(f"存款产品不需要担保方式，文中却提到「{req.collateral}」：担保是借款人向银行提供的，"
                         "存款是客户把钱存入银行（若指存单可质押融资，请另行说明）")
    if req.category == "loan":
        m = _START_WORDS.search(text)
        if m:
            start, end = next((c for c in _clauses(text) if c[0] <= m.start() < c[1]), (m.start(), m.end()))
            conflicts.append(f"贷款产品没有起存（起购）金额，「{text[start:end].strip()}」是存款或理财的说法；"
                             "若指最低贷款金额，请写「起贷金额」或「最低额度」")


def parse_requirement(text: str) -> Requirement:
    """A designer's description of a new product idea → `Requirement`: category, segment, purpose, product
    type, term, amount, rate, collateral, repayment, channels and target customers, with notes on how each
    number was read and the contradictions in `conflicts`. What the text does not say stays None."""
    req = Requirement(text=text)
    mapped = _fold(text or "")
    plain = mapped.text
    notes: list[str] = []
    req.category = _category(plain, notes)
    req.segment = _segment(plain, notes)
    target = _target(plain)
    req.target_customers = target[0] if target else None
    req.purpose, purposes = _purpose(plain, notes, target[1:] if target else None, req.category)
    req.collateral = _joined(plain, _COLLATERAL)
    req.repayment = _joined(plain, _REPAYMENT)
    req.channels = _ordered_labels(_scan(plain, _CHANNELS))

    _numeric(mapped)
    reader = _Reader(mapped, req.category)
    reader.read()
    req.rate_min, req.rate_max = reader.bound("rate", "min"), reader.bound("rate", "max")
    req.amount_min, req.amount_max = reader.bound("amount", "min"), reader.bound("amount", "max")
    tmin, tmax = reader.bound("term", "min"), reader.bound("term", "max")
    req.term_min_months = int(tmin) if tmin is not None else None
    req.term_max_months = int(tmax) if tmax is not None else None
    req.product_type = _product_type(plain, req.category, req.segment, req.purpose, purposes,
                                     (req.term_min_months, req.term_max_months))
    if req.product_type:
        said = "·".join(x for x in (CATEGORY_NAMES.get(req.category or ""),
                                    SEGMENT_NAMES.get(req.segment or ""), req.purpose) if x)
        notes.append(f"产品类型归为「{req.product_type}」（{said}）")
    req.notes = reader.notes + notes
    req.conflicts = list(reader.conflicts)
    _check(req, reader, plain)
    return req
