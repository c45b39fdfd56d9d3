"""The demo bank's business data: monthly metrics, customers, holdings, loans, FTP curve, competitor rates.

Money is kept in integer fen (cents) throughout, so that sums are exact: the latest month's loan
metrics per product and branch are the sums over loans.csv, and the metrics of the products whose
customers are simulated one by one (holdings.csv) are the sums over the holdings.

Planted situations (latest month 2026-10, see `ingest.demo_catalog.PLANTED_NAMES`): one loan product
with npl_rate ≥ 3 concentrated in one sub-branch, two on the watch list, one with an overdue jump, a
draining deposit product, a loss-making deposit product (priced above its transfer price), and a new
deposit product launched 2026-02 whose new customers mostly moved money out of the bank's own older
time deposits. Every other product stays clear of the default alert rules.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from ingest.demo_catalog import CITY, HEAD, REGION_CODE, Catalog, Spec

MONTHS: tuple[str, ...] = tuple(f"{2024 + (10 + i) // 12}-{(10 + i) % 12 + 1:02d}" for i in range(24))
LATEST = len(MONTHS) - 1  # 2026-10
LATEST_END = date(2026, 10, 31)

METRIC_COLUMNS = ("month", "product_code", "branch_code", "balance", "avg_balance", "customers", "new_customers",
                  "lost_customers", "volume", "interest_income", "interest_expense", "fee_income", "opex", "provision",
                  "npl_balance", "overdue_balance", "complaints", "satisfaction")
CUSTOMER_COLUMNS = ("customer_id", "name", "segment", "branch_code", "id_number", "phone")
HOLDING_COLUMNS = ("month", "customer_id", "product_code", "balance")
LOAN_COLUMNS = ("loan_id", "customer_id", "product_code", "branch_code", "amount", "balance", "rate", "start_date",
                "maturity_date", "five_class", "overdue_days")
FTP_COLUMNS = ("as_of", "term_months", "rate")
COMPETITOR_COLUMNS = ("as_of", "bank", "product_type", "term_months", "rate", "notes")

FTP_TERMS = (1, 3, 6, 12, 24, 36, 60)
_FTP_BASE = (
    ("2024-11-01", (1.85, 1.92, 1.98, 2.05, 2.18, 2.32, 2.55)),
    ("2025-05-01", (1.65, 1.72, 1.78, 1.85, 1.98, 2.12, 2.35)),
    ("2025-11-01", (1.55, 1.62, 1.68, 1.76, 1.90, 2.05, 2.28)),
    ("2026-05-01", (1.45, 1.52, 1.60, 1.70, 1.85, 2.00, 2.22)),
)


def money(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def month_index(day: str) -> int:
    """Index in MONTHS of the month of a YYYY-MM-DD date (may be < 0 or > LATEST)."""
    y, m = int(day[:4]), int(day[5:7])
    return (y - 2024) * 12 + m - 11


def add_months(d: date, months: int) -> date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(d.day, last))


@dataclass
class Business:
    metrics: list[list[str]] = field(default_factory=list)
    customers: list[list[str]] = field(default_factory=list)
    holdings: list[list[str]] = field(default_factory=list)
    loans: list[list[str]] = field(default_factory=list)
    ftp: list[list[str]] = field(default_factory=list)
    competitors: list[list[str]] = field(default_factory=list)


# --- FTP curve and competitor rates ------------------------------------------------------------


class Curve:
    def __init__(self, rng: random.Random) -> None:
        self.points: list[tuple[int, tuple[float, ...]]] = []
        for as_of, rates in _FTP_BASE:
            noisy = tuple(round(r + rng.uniform(-0.02, 0.02), 2) for r in rates)
            self.points.append((month_index(as_of), noisy))

    def rows(self) -> list[list[str]]:
        return [[as_of, str(term), f"{rate:.2f}"] for (as_of, _), (_, rates) in zip(_FTP_BASE, self.points, strict=True)
                for term, rate in zip(FTP_TERMS, rates, strict=True)]

    def rate(self, term: int, t: int) -> float:
        rates = self.points[0][1]
        for start, r in self.points:
            if start <= t:
                rates = r
        for k, tm in enumerate(FTP_TERMS):
            if term <= tm:
                return rates[k]
        return rates[-1]


_PEERS = ("工商银行", "建设银行", "招商银行", "青岛银行", "齐鲁银行", "某城商行")
_PEER_RATES = (
    ("个人消费贷", 36, (3.10, 3.10, 3.20, 3.45, 3.50, 3.80)),
    ("小微经营贷", 12, (3.20, 3.25, 3.45, 3.60, 3.70, 4.10)),
    ("个人住房贷款", 360, (3.05, 3.05, 3.10, 3.15, 3.20, 3.25)),
    ("一年期定期存款", 12, (0.95, 0.95, 0.95, 1.15, 1.20, 1.30)),
    ("三年期定期存款", 36, (1.25, 1.25, 1.25, 1.55, 1.60, 1.75)),
    ("五年期定期存款", 60, (1.30, 1.30, 1.30, 1.60, 1.65, 1.80)),
    ("大额存单", 36, (1.55, 1.55, 1.50, 1.75, 1.80, 1.90)),
    ("银票贴现", 6, (1.20, 1.25, 1.30, 1.45, 1.50, 1.60)),
    ("个人汽车贷款", 36, (3.30, 3.40, 3.50, 3.80, 3.90, 4.20)),
    ("涉农经营贷", 24, (3.60, 3.70, 3.90, 4.30, 4.40, 4.90)),
)
_PEER_NOTES = ("官网挂牌利率", "手机银行公告", "客户经理市场调研", "同业交流获取", "")


def competitor_rows(rng: random.Random) -> list[list[str]]:
    rows: list[list[str]] = []
    for q, as_of in enumerate(("2026-04-30", "2026-07-31", "2026-10-31")):
        for ptype, term, rates in _PEER_RATES:
            for bank, base in zip(_PEERS, rates, strict=True):
                rate = base + 0.05 * (2 - q) + rng.choice((-0.05, 0.0, 0.0, 0.05))
                rows.append([as_of, bank, ptype, str(term), f"{rate:.2f}", rng.choice(_PEER_NOTES)])
    return rows


# --- customers ---------------------------------------------------------------------------------

_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
             "姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
_GIVEN = ("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红鹏辉建国立新志海燕斌雪梅林波宇浩然欣怡子轩"
          "晨阳思远佳琪雨婷俊杰文博晓东丹丹凯峰春梅嘉豪诗涵梓萱一鸣振华永胜德明淑珍秀兰")
_TRADE_NAMES = ("鑫源", "恒达", "瑞丰", "华泰", "宏远", "金海", "盛世", "永信", "东方", "海纳", "德润", "聚力",
                "博远", "鲁信", "泰和", "昌盛", "新锐", "蓝海", "诚信", "万通", "齐鲁", "嘉禾", "兴业", "天成",
                "众合", "启航", "裕丰", "润通", "安泰", "利民")
_INDUSTRIES = ("机械制造", "食品", "纺织", "化工", "建材", "物流", "电子科技", "海洋生物", "医药", "商贸", "建筑工程",
               "新能源", "环保科技", "农业发展", "信息技术", "汽车零部件", "港口服务", "包装材料")
_SHOPS = ("餐饮店", "五金商行", "果蔬批发部", "便利店", "家电商行", "汽修厂", "服装店", "农资经营部", "水产经营部",
          "烧烤店", "建材经营部", "茶叶店", "蔬菜种植专业合作社", "家庭农场", "印刷厂", "物流配送站")
_DISTRICTS = {"B100": ("市南区", "市北区", "崂山区", "黄岛区", "城阳区"), "B200": ("历下区", "市中区", "槐荫区", "高新区"),
              "B300": ("芝罘区", "莱山区", "福山区", "龙口市"), "B400": ("奎文区", "寿光市", "青州市", "诸城市"),
              "B500": ("兰山区", "罗庄区", "河东区"), "B600": ("环翠区", "文登区", "荣成市")}
_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _person_name(rng: random.Random) -> str:
    given = rng.choice(_GIVEN) if rng.random() < 0.3 else rng.choice(_GIVEN) + rng.choice(_GIVEN)
    return rng.choice(_SURNAMES) + given


def _id_number(rng: random.Random, region: str) -> str:
    birth = date(1955, 1, 1) + timedelta(days=rng.randint(0, 18000))
    body = f"{region}{birth:%Y%m%d}{rng.randint(1, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    return body + check


def _uscc(rng: random.Random, region: str, individual: bool) -> str:
    org = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    org_w = (3, 7, 9, 10, 5, 8, 4, 2)
    c = 11 - sum(_USCC_CHARS.index(ch) * w for ch, w in zip(org, org_w, strict=True)) % 11
    org += "X" if c == 10 else ("0" if c == 11 else str(c))
    body = ("92" if individual else "91") + region + org
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    c = 31 - sum(_USCC_CHARS.index(ch) * w for ch, w in zip(body, weights, strict=True)) % 31
    return body + _USCC_CHARS[0 if c == 31 else c]


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('358')}{rng.randint(0, 999999999):09d}"


@dataclass
class Customer:
    cid: str
    segment: str
    branch: str  # 支行


def make_customers(cat: Catalog, rng: random.Random) -> tuple[list[list[str]], list[Customer]]:
    """About 6000 customers: retail, corporate and inclusive, spread over the 支行."""
    subs = [(b, s) for b, ss in cat.subs.items() for s in ss]
    weights = [1.6 if s.endswith("01") else 1.0 for _, s in subs]
    rows: list[list[str]] = []
    people: list[Customer] = []
    seen_names: set[str] = set()
    for segment, count in (("retail", 4800), ("corporate", 450), ("inclusive", 750)):
        for _ in range(count):
            branch, sub = rng.choices(subs, weights)[0]
            region = REGION_CODE[branch]
            if segment == "retail":
                name, idn = _person_name(rng), _id_number(rng, region)
            else:
                while True:
                    if segment == "inclusive" and rng.random() < 0.55:
                        name = f"{rng.choice(_DISTRICTS[branch])}{rng.choice(_TRADE_NAMES)}{rng.choice(_SHOPS)}"
                        individual = True
                    else:
                        size = "有限公司" if segment == "inclusive" else rng.choice(("有限公司", "股份有限公司", "集团有限公司"))
                        name = f"{CITY[branch]}{rng.choice(_TRADE_NAMES)}{rng.choice(_INDUSTRIES)}{size}"
                        individual = False
                    if name not in seen_names:
                        break
                seen_names.add(name)
                idn = _uscc(rng, region, individual)
            cid = f"C{len(rows) + 1:06d}"
            rows.append([cid, name, segment, sub, idn, _phone(rng)])
            people.append(Customer(cid, segment, sub))
    return rows, people


# --- monthly facts -----------------------------------------------------------------------------

# Mature balance per selling branch (元), the average ticket per customer (元) and the monthly drift.
_LEVEL = {"demand": 42e6, "time": 28e6, "cd": 18e6, "struct": 14e6, "margin": 14e6, "inst": 28e6, "notice": 14e6,
          "fxdep": 4e6, "acq": 3e6, "payroll": 5e6, "billpay": 1e6, "remit": 2e6, "xb": 1e6, "debit": 2e6,
          "cash": 8e6, "wm": 30e6, "fund": 15e6, "ins": 10e6, "metal": 3e6, "cust": 80e6, "ib": 40e6, "trust": 20e6,
          "agency": 5e6, "liab": 50e6, "asset": 50e6, "fx": 50e6, "cons": 3e6, "auto": 3e6}
_TICKET = {"demand": 25e3, "time": 90e3, "cd": 450e3, "struct": 800e3, "margin": 600e3, "inst": 5e6, "notice": 400e3,
           "fxdep": 60e3, "acq": 30e3, "payroll": 3e3, "billpay": 500.0, "remit": 2e3, "xb": 20e3, "debit": 1500.0,
           "cash": 2e6, "wm": 150e3, "fund": 60e3, "ins": 80e3, "metal": 20e3, "cust": 300e6, "ib": 80e6,
           "trust": 3e6, "agency": 30e3, "liab": 300e6, "asset": 300e6, "fx": 50e6,
           "cons": 80e3, "mort": 600e3, "auto": 150e3, "card": 20e3, "incl": 600e3, "corp": 20e6, "disc": 5e6,
           "offbs": 5e6, "trade": 5e6}
_DRIFT = {"demand": 0.0015, "time": 0.0015, "cd": -0.005, "struct": 0.001, "margin": 0.001, "inst": 0.0015,
          "notice": 0.001, "fxdep": 0.0005, "wm": 0.006, "fund": 0.004, "ins": 0.005, "metal": 0.006, "cust": 0.005,
          "liab": 0.003, "asset": 0.004, "fx": 0.003}
# Deposits: transfer price above the customer rate, in % points.
_DEPOSIT_SPREAD = {"demand": 1.25, "time": 0.45, "cd": 0.30, "struct": 0.35, "margin": 0.90, "inst": 0.95,
                   "notice": 0.80, "fxdep": 0.60}


@dataclass
class Econ:
    """Per-product economics."""

    opex_ratio: float
    churn: float
    complaint_rate: float  # per 10,000 customers per month
    satisfaction: float
    spread: float = 0.0  # deposits and market liabilities: FTP above the paid rate
    provision_ratio: float = 0.0
    volume_ratio: float = 0.1
    npl_path: str = "normal"  # normal, watch, suspend
    overdue_path: str = "normal"  # normal, jump


def make_econ(spec: Spec, rng: random.Random, planted: dict[str, list[str]]) -> Econ:
    econ = Econ(opex_ratio=rng.uniform(0.25, 0.5), churn=rng.uniform(0.008, 0.025),
                complaint_rate=rng.uniform(0.3, 3.0) if spec.segment in ("retail", "inclusive", "all") else 0.4,
                satisfaction=rng.uniform(86.0, 96.5))
    if spec.category == "deposit":
        econ.spread = _DEPOSIT_SPREAD[spec.kind] + rng.uniform(-0.08, 0.12)
        econ.volume_ratio = rng.uniform(0.08, 0.3)
        if spec.code in planted["loss_making"]:
            econ.spread = -0.35  # a 高息揽储 issue priced above its transfer price
    elif spec.category == "market":
        econ.spread = rng.uniform(0.12, 0.3)
        econ.volume_ratio = rng.uniform(1.0, 4.0)
        econ.complaint_rate = 0.0
    elif spec.category == "payment":
        econ.volume_ratio = rng.uniform(15.0, 40.0)
    elif spec.category == "intermediary":
        econ.volume_ratio = rng.uniform(0.03, 0.15)
    else:
        econ.volume_ratio = rng.uniform(0.02, 0.08)
        econ.complaint_rate = rng.uniform(1.0, 4.0) if spec.segment == "retail" else rng.uniform(0.5, 2.0)
    if spec.code in planted["npl_suspend"]:
        econ.npl_path = "suspend"
    elif spec.code in planted["npl_watch"]:
        econ.npl_path = "watch"
    if spec.code in planted["overdue_jump"]:
        econ.overdue_path = "jump"
    return econ


def _f(x: float) -> int:
    return int(round(x))


class Facts:
    """Turns balances into full metric rows (income, cost, customers, complaints…)."""

    def __init__(self, curve: Curve, rng: random.Random, out: list[list[str]]) -> None:
        self.curve, self.rng, self.out = curve, rng, out

    def row(self, spec: Spec, econ: Econ, branch: str, t: int, bal: int, prev: int, customers: int, new: int,
            lost: int, volume: int | None = None, npl: int | None = None, overdue: int | None = None) -> None:
        rng = self.rng
        avg = (bal + prev) // 2 if prev > 0 else bal * 6 // 10
        cat, kind, rate = spec.category, spec.kind, spec.rate
        if volume is None:
            volume = _f(avg * econ.volume_ratio * rng.uniform(0.85, 1.15))
        ii = ie = fee = prov = 0
        if cat == "deposit":
            ftp_shift = (self.curve.rate(12, t) - self.curve.rate(12, LATEST)) * 0.5
            ie = _f(avg * rate / 1200)
            ii = _f(avg * (rate + econ.spread + ftp_shift) / 1200)
        elif cat == "loan":
            if kind == "offbs":
                fee = _f(avg * rate / 1200)
            else:
                ftp = min(self.curve.rate(spec.term or 12, t), rate - 0.5)
                ii, ie = _f(avg * rate / 1200), _f(avg * ftp / 1200)
                fee = _f(avg * 0.0002 * rng.uniform(0.5, 1.5)) if kind in ("corp", "trade", "incl") else 0
        elif cat == "payment":
            ii, ie = _f(avg * self.curve.rate(1, t) / 1200), _f(avg * 0.10 / 1200)
            fee = _f(volume * rate / 100)
        elif cat == "intermediary":
            fee = _f(volume * rate / 100) if kind in ("ins", "ib") else _f(avg * rate / 1200)
        elif kind == "liab":
            ie = _f(avg * rate / 1200)
            ii = _f(avg * (rate + econ.spread) / 1200)
        elif kind == "asset":
            ftp = min(self.curve.rate(spec.term or 1, t), rate - econ.spread)
            ii, ie = _f(avg * rate / 1200), _f(avg * ftp / 1200)
        else:
            fee = _f(volume * rate / 100)
        net_rev = ii - ie + fee
        opex = _f(abs(net_rev) * econ.opex_ratio * rng.uniform(0.9, 1.1))
        if cat == "loan":
            prov = _f(max(net_rev, 0) * econ.provision_ratio * rng.uniform(0.85, 1.15))
        expected = customers * econ.complaint_rate / 10000
        complaints = int(expected + rng.random())
        sat = min(99.5, max(70.0, econ.satisfaction + rng.gauss(0, 0.8) - (3.0 if spec.status == "suspended" else 0)))
        self.out.append([
            MONTHS[t], spec.code, branch, money(bal), money(avg), str(customers), str(new), str(lost), money(volume),
            money(ii), money(ie), money(fee), money(opex), money(prov),
            "" if npl is None else money(npl), "" if overdue is None else money(overdue), str(complaints), f"{sat:.1f}",
        ])


def live_range(spec: Spec) -> tuple[int, int] | None:
    """First and last month index with a metrics row, or None."""
    if not spec.launch:
        return None
    t0 = max(0, month_index(spec.launch))
    t1 = min(LATEST, month_index(spec.retire)) if spec.retire else LATEST
    return (t0, t1) if t0 <= t1 else None


def customer_path(balances: list[int], ticket: float, churn: float, launched_at: int | None,
                  rng: random.Random) -> tuple[list[int], list[int], list[int]]:
    """Customers, new and lost customers per month from a balance path (the first entry is the month before)."""
    cust = [max(1, _f(b / 100 / ticket)) for b in balances]
    if launched_at is not None:
        cust[0] = 0
    new: list[int] = [0]
    lost: list[int] = [0]
    for k in range(1, len(cust)):
        if launched_at is not None and k == 1:
            new.append(cust[k])
            lost.append(0)
            continue
        gone = min(cust[k - 1], _f(cust[k - 1] * churn * rng.uniform(0.7, 1.3)))
        came = cust[k] - cust[k - 1] + gone
        if came < 0:
            gone, came = gone - came, 0
        new.append(came)
        lost.append(gone)
    return cust, new, lost


def _trend_time(spec: Spec, t: int) -> float:
    """Months of trend up to t: deposits stall from 2026 on (money moves to wealth products), new issues aside."""
    if spec.category != "deposit":
        return float(t)
    return min(t, 14) + 0.15 * max(0, t - 14)


def selling_branches(spec: Spec, cat: Catalog, rng: random.Random) -> list[str]:
    subs_all = [s for ss in cat.subs.values() for s in ss]
    if spec.category == "market":
        return [HEAD]
    if spec.kind in ("cust", "ib"):
        return sorted(rng.sample(list(cat.subs), rng.randint(2, 6)))
    if spec.region:
        return list(cat.subs[spec.region])
    if spec.code in cat.planted["npl_suspend"]:
        extra = [s for s in subs_all if s not in cat.subs["B400"] and s not in cat.subs["B500"]]
        return [*cat.subs["B400"], *cat.subs["B500"], *sorted(rng.sample(extra, 3))]
    low, high = {"retail": (10, 23), "all": (10, 23), "inclusive": (8, 18), "corporate": (5, 14)}[spec.segment]
    if spec.scale < 0.5:
        high = max(low, high - 8)
    return sorted(rng.sample(subs_all, rng.randint(low, high)))


def aggregate(spec: Spec, econ: Econ, branches: list[str], weight: dict[str, float], facts: Facts,
              rng: random.Random, planted: dict[str, list[str]]) -> None:
    """Metrics rows for a product modelled in aggregate (smooth trend with noise per branch)."""
    span = live_range(spec)
    if span is None:
        return
    t0, t1 = span
    launched_in = month_index(spec.launch) >= 0
    g = _DRIFT.get(spec.kind, 0.005) + rng.gauss(0, 0.003)
    if spec.status == "suspended":
        g = -0.03
    ticket = _TICKET[spec.kind] * rng.uniform(0.7, 1.4)
    drain = spec.code in planted["deposit_drain"]
    npl_rate = rng.uniform(0.3, 0.8) / 100
    for b in branches:
        level = _LEVEL.get(spec.kind, 5e6) * spec.scale * weight[b] * math.exp(rng.gauss(0, 0.35))
        if spec.kind == "cd" and t0 >= 14:
            level *= 0.45  # the 2026 issues are smaller: they mostly roll over maturing certificates
        gb = g + rng.gauss(0, 0.002)
        path: list[int] = []
        for t in range(t0 - 1, t1 + 1):
            if launched_in and t == t0 - 1:
                path.append(0)
                continue
            x = level * math.exp(gb * (_trend_time(spec, t) - _trend_time(spec, LATEST)))
            if launched_in:
                x *= min(1.0, (t - t0 + 1) / (2 if spec.kind == "cd" else 6))
            if spec.retire and t1 - t < 6:
                x *= 0.15 + 0.85 * (t1 - t) / 6
            if drain and t == LATEST:
                x *= 0.74
            if t < LATEST:
                x *= math.exp(rng.gauss(0, 0.018))
            path.append(max(100, _f(x * 100)))
        cust, new, lost = customer_path(path, ticket, econ.churn, 0 if launched_in else None, rng)
        for k, t in enumerate(range(t0, t1 + 1), start=1):
            npl = od = None
            if spec.category == "loan":
                npl = _f(path[k] * npl_rate)
                od = _f(npl * 1.4)
            facts.row(spec, econ, b, t, path[k], path[k - 1], cust[k], new[k], lost[k], npl=npl, overdue=od)


# --- loans ---------------------------------------------------------------------------------------

_LOAN_SIZE = {"cons": (30e3, 300e3), "mort": (300e3, 2e6), "auto": (60e3, 300e3), "card": (3e3, 60e3),
              "incl": (100e3, 2e6), "corp": (5e6, 80e6), "disc": (500e3, 20e6), "offbs": (500e3, 20e6),
              "trade": (500e3, 20e6)}
_LOAN_COUNT = {"cons": 16, "mort": 22, "auto": 10, "card": 26, "incl": 10, "corp": 4, "disc": 5, "offbs": 4,
               "trade": 4}
_LOAN_DRIFT = {"cons": 0.006, "mort": 0.004, "auto": 0.005, "card": 0.003, "incl": 0.008, "corp": 0.004,
               "disc": 0.002, "offbs": 0.003, "trade": 0.004}
_AMORTISING = ("等额本息", "等额本金", "按期分摊", "按计划分期还款")
NPL_CLASSES = ("次级", "可疑", "损失")


@dataclass
class Loan:
    loan_id: str
    customer_id: str
    code: str
    branch: str
    amount: int  # fen
    balance: int
    rate: float
    start: date
    maturity: date
    five_class: str = "正常"
    overdue_days: int = 0


def _targets(spec: Spec, econ: Econ, rng: random.Random) -> tuple[float, float]:
    """Product-level (npl_rate, overdue_rate) in % for the latest month."""
    if econ.npl_path == "suspend":
        npl = rng.uniform(3.6, 4.2)
        return npl, npl + rng.uniform(0.3, 0.5)
    if econ.npl_path == "watch":
        npl = rng.uniform(1.6, 2.4)
        return npl, npl + rng.uniform(0.2, 0.4)
    if econ.overdue_path == "jump":
        return rng.uniform(0.4, 0.7), rng.uniform(2.4, 2.8)
    if spec.status == "suspended":
        npl = rng.uniform(0.5, 0.9)
        return npl, npl + rng.uniform(0.2, 0.4)
    low, high = {"mort": (0.05, 0.4), "auto": (0.1, 0.6), "corp": (0.0, 0.6), "trade": (0.0, 0.5),
                 "disc": (0.0, 0.1), "offbs": (0.0, 0.1)}.get(spec.kind, (0.15, 0.8))
    npl = 0.0 if rng.random() < 0.15 else rng.uniform(low, high)
    return npl, npl + rng.uniform(0.1, 0.6)


def _mark(loans: list[Loan], target: int, rng: random.Random, npl: bool) -> int:
    """Classify loans as non-performing (npl) or overdue-but-performing until `target` fen; return the rest."""
    pool = [ln for ln in loans if ln.five_class == "正常"]
    rng.shuffle(pool)
    remaining = target
    chosen: list[Loan] = []
    for ln in pool:
        if remaining <= 0:
            break
        if ln.balance <= remaining:
            chosen.append(ln)
            remaining -= ln.balance
    if remaining >= 100_000:  # 1000 元: one partly repaid loan takes the rest
        taken = {ln.loan_id for ln in chosen}
        rest = sorted((ln for ln in pool if ln.loan_id not in taken and ln.balance > remaining),
                      key=lambda ln: ln.balance)
        if rest:
            rest[0].balance = remaining
            chosen.append(rest[0])
            remaining = 0
    for ln in chosen:
        if npl:
            ln.five_class = rng.choices(NPL_CLASSES, (0.55, 0.3, 0.15))[0]
            ln.overdue_days = {"次级": rng.randint(91, 180), "可疑": rng.randint(181, 360)}.get(
                ln.five_class, rng.randint(361, 900))
        else:
            ln.five_class = "关注"
            ln.overdue_days = rng.randint(1, 89)
    return remaining


class LoanBook:
    """Generates the loan-level snapshot and, from it, the loan products' metrics."""

    def __init__(self, cat: Catalog, people: list[Customer], rng: random.Random) -> None:
        self.cat, self.rng = cat, rng
        self.by_seg_branch: dict[tuple[str, str], list[str]] = {}
        self.by_seg: dict[str, list[str]] = {}
        for p in people:
            self.by_seg_branch.setdefault((p.segment, p.branch), []).append(p.cid)
            self.by_seg.setdefault(p.segment, []).append(p.cid)
        self.loans: list[Loan] = []

    def _borrower(self, spec: Spec, branch: str) -> str:
        rng = self.rng
        seg = {"retail": "retail", "inclusive": "inclusive", "corporate": "corporate"}.get(spec.segment)
        if seg is None:
            seg = "corporate" if rng.random() < 0.6 else "retail"
        local = self.by_seg_branch.get((seg, branch))
        return rng.choice(local) if local and rng.random() < 0.92 else rng.choice(self.by_seg[seg])

    def make(self, spec: Spec, branches: list[str], weight: dict[str, float]) -> list[Loan]:
        rng = self.rng
        lo, hi = _LOAN_SIZE[spec.kind]
        count = _LOAN_COUNT[spec.kind]
        if spec.cluster == "online":
            lo, hi = 50e3, 1e6
        elif spec.cluster == "ma":
            lo, hi, count = 50e6, 300e6, 1
        lo, hi = max(lo, spec.amin), min(hi, spec.amax) if spec.amax else hi
        launch = date.fromisoformat(spec.launch)
        term = spec.term or 12
        made: list[Loan] = []
        for b in branches:
            n = max(1, _f(count * weight[b] * rng.uniform(0.6, 1.4)))
            if b == self.cat.planted["npl_branch"][0] and spec.code in self.cat.planted["npl_suspend"]:
                n *= 3
            for _ in range(n):
                amount = _f(math.exp(rng.uniform(math.log(lo), math.log(hi))) / 1000) * 1000 * 100
                earliest = max(launch, add_months(LATEST_END, -min(term, 120)) + timedelta(days=1), date(2012, 1, 1))
                span = (LATEST_END - timedelta(days=5) - earliest).days
                start = earliest + timedelta(days=rng.randint(0, max(span, 0)))
                maturity = add_months(start, term)
                elapsed = (LATEST_END - start).days / max((maturity - start).days, 1)
                if spec.repayment in _AMORTISING:
                    left = 1 - elapsed ** 1.2 * rng.uniform(0.85, 1.0)
                elif spec.repayment == "随借随还":
                    left = rng.uniform(0.4, 1.0)
                else:
                    left = 1.0
                balance = max(100_00, _f(amount * max(left, 0.02) / 100) * 100)
                rate = round(min(max(spec.rate + rng.gauss(0, 0.25), spec.rate_lo, 0.3), spec.rate_hi or 99.0), 2)
                made.append(Loan(f"L{len(self.loans) + len(made) + 1:07d}", self._borrower(spec, b), spec.code, b,
                                 amount, balance, rate, start, maturity))
        return made

    def classify(self, spec: Spec, econ: Econ, loans: list[Loan]) -> tuple[float, float]:
        rng = self.rng
        npl_rate, od_rate = _targets(spec, econ, rng)
        total = sum(ln.balance for ln in loans)
        target = _f(total * npl_rate / 100)
        if econ.npl_path == "suspend":
            here = self.cat.planted["npl_branch"][0]
            local = [ln for ln in loans if ln.branch == here]
            left = _mark(local, _f(target * 0.78), rng, npl=True)
            _mark([ln for ln in loans if ln.branch != here], target - _f(target * 0.78) + left, rng, npl=True)
        elif target > 0:
            _mark(loans, target, rng, npl=True)
        total = sum(ln.balance for ln in loans)
        npl_now = sum(ln.balance for ln in loans if ln.five_class in NPL_CLASSES)
        _mark(loans, max(0, _f(total * od_rate / 100) - npl_now), rng, npl=False)
        for ln in loans:
            if ln.five_class == "正常" and rng.random() < 0.01:
                ln.five_class = "关注"
        econ.provision_ratio = min(0.35, 0.08 + 0.06 * npl_rate)
        return npl_rate, od_rate

    def metrics(self, spec: Spec, econ: Econ, loans: list[Loan], facts: Facts) -> None:
        """Loan product metrics: the latest month from the loans, earlier months back along a trend."""
        rng = self.rng
        span = live_range(spec)
        assert span is not None and span[1] == LATEST
        t0 = span[0]
        launched_in = month_index(spec.launch) >= 0
        g = _LOAN_DRIFT[spec.kind] + rng.gauss(0, 0.003)
        if spec.status == "suspended":
            g = -0.03
        if econ.npl_path == "suspend":
            g = 0.012
        f_npl = [1.0] * (LATEST + 1)
        f_od = [1.0] * (LATEST + 1)
        for t in range(LATEST):
            x = t / LATEST
            base = {"suspend": 0.35 + 0.65 * x * x, "watch": 0.55 + 0.45 * x}.get(econ.npl_path, 0.85 + 0.15 * x)
            f_npl[t] = base * rng.uniform(0.98, 1.02)
            f_od[t] = (0.55 + 0.05 * x) if econ.overdue_path == "jump" else f_npl[t] * rng.uniform(0.98, 1.02)
        per_branch: dict[str, list[Loan]] = {}
        for ln in loans:
            per_branch.setdefault(ln.branch, []).append(ln)
        for b, items in per_branch.items():
            bal_l = sum(ln.balance for ln in items)
            npl_l = sum(ln.balance for ln in items if ln.five_class in NPL_CLASSES)
            od_l = sum(ln.balance for ln in items if ln.overdue_days > 0)
            borrowers = len({ln.customer_id for ln in items})
            gb = g + rng.gauss(0, 0.002)
            path: list[int] = []
            for t in range(t0 - 1, LATEST + 1):
                if launched_in and t == t0 - 1:
                    path.append(0)
                    continue
                if t == LATEST:
                    path.append(bal_l)
                    continue
                x = bal_l * math.exp(gb * (t - LATEST)) * math.exp(rng.gauss(0, 0.015))
                if launched_in:
                    x *= min(1.0, (t - t0 + 1) / 6) / min(1.0, (LATEST - t0 + 1) / 6)
                path.append(max(100, _f(x)))
            cust, new, lost = customer_path(path, bal_l / 100 / borrowers, econ.churn, 0 if launched_in else None, rng)
            for k, t in enumerate(range(t0, LATEST + 1), start=1):
                bal = path[k]
                if t == LATEST:
                    npl, od = npl_l, od_l
                else:
                    npl = _f(bal * npl_l / bal_l * f_npl[t])
                    od = max(npl, _f(bal * od_l / bal_l * f_od[t]))
                facts.row(spec, econ, b, t, bal, path[k - 1], cust[k], new[k], lost[k], npl=npl, overdue=od)

    def rows(self) -> list[list[str]]:
        return [[ln.loan_id, ln.customer_id, ln.code, ln.branch, money(ln.amount), money(ln.balance), f"{ln.rate:.2f}",
                 ln.start.isoformat(), ln.maturity.isoformat(), ln.five_class, str(ln.overdue_days)]
                for ln in self.loans]


# --- holdings: customers simulated one by one ------------------------------------------------------

# Share of retail customers holding the product at the start, median balance (元) and its spread.
_HOLD_PARAMS: tuple[tuple[float, float, float], ...] = (
    (0.0, 90e3, 0.8),  # 悦享存·三年期 (new, filled by moves)
    (0.22, 90e3, 0.9), (0.12, 120e3, 0.8), (0.10, 70e3, 0.9), (0.18, 60e3, 0.9),
    (0.05, 400e3, 0.5), (0.10, 120e3, 0.7), (0.15, 25e3, 1.0), (0.04, 100e3, 0.7), (0.05, 15e3, 0.9),
    (0.08, 20e3, 1.0),
)


class HoldingSim:
    """Month-end balances of retail customers in a few products, including the internal substitution."""

    def __init__(self, cat: Catalog, people: list[Customer], rng: random.Random) -> None:
        self.cat, self.rng = cat, rng
        self.retail = [p for p in people if p.segment == "retail"]
        self.branch_of = {p.cid: p.branch for p in people}
        self.codes = list(cat.holding_codes)
        self.specs = {s.code: s for s in cat.specs if s.code in self.codes}
        self.params = dict(zip(self.codes, _HOLD_PARAMS, strict=True))
        self.new_code = cat.planted["substitution_new"][0]
        self.sources = list(cat.planted["substitution_old"])
        self.launch = {c: month_index(self.specs[c].launch) for c in self.codes}

    def _draw(self, code: str) -> int:
        _, median, sigma = self.params[code]
        yuan = median * math.exp(self.rng.gauss(0, sigma))
        if self.specs[code].kind == "cd":
            yuan = max(yuan, 200e3)
        return max(1000, _f(yuan / 100)) * 10000 if yuan >= 1e5 else max(100, _f(yuan)) * 100

    def run(self, facts: Facts, econs: dict[str, Econ]) -> list[list[str]]:
        rng = self.rng
        holds: dict[str, dict[str, int]] = {c: {} for c in self.codes}
        for p in self.retail:
            for c in self.codes:
                if self.launch[c] <= -1 and rng.random() < self.params[c][0]:
                    holds[c][p.cid] = self._draw(c)
        rows: list[list[str]] = []
        prev = {c: dict(d) for c, d in holds.items()}
        for t in range(LATEST + 1):
            opened: dict[str, dict[str, int]] = {c: {} for c in self.codes}
            for c in self.codes:
                if self.launch[c] > t:
                    continue
                wealth = self.specs[c].category != "deposit"
                cur: dict[str, int] = {}
                for cid, bal in holds[c].items():
                    if rng.random() < (0.004 if c == self.new_code else 0.011):
                        continue
                    drift = rng.gauss(0.003, 0.012) if wealth else rng.gauss(0.0015, 0.002)
                    cur[cid] = max(100, _f(bal * (1 + drift)))
                n_open = 0 if c == self.new_code else _f(max(len(holds[c]), 50) * rng.uniform(0.010, 0.018))
                for _ in range(n_open):
                    p = rng.choice(self.retail)
                    if p.cid not in cur:
                        cur[p.cid] = opened[c][p.cid] = self._draw(c)
                holds[c] = cur
            if t >= self.launch[self.new_code]:
                self._substitute(holds, opened)
            for c in self.codes:
                if self.launch[c] > t:
                    continue
                rows += [[MONTHS[t], cid, c, money(bal)] for cid, bal in holds[c].items()]
                self._emit(c, t, prev[c], holds[c], opened[c], facts, econs[c])
            prev = {c: dict(d) for c, d in holds.items()}
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        return rows

    def _substitute(self, holds: dict[str, dict[str, int]], opened: dict[str, dict[str, int]]) -> None:
        """Customers move money from the older time deposits into the new product, plus a little new money."""
        rng = self.rng
        new = holds[self.new_code]
        switchers = 0
        for src in self.sources:
            for cid in list(holds[src]):
                if cid in new or cid in opened[self.new_code] or rng.random() >= 0.055:
                    continue
                bal = holds[src][cid]
                share = rng.uniform(0.5, 1.0)
                moved = bal if share >= 0.85 else _f(bal * share / 10000) * 10000 or bal
                if moved >= bal:
                    del holds[src][cid]
                else:
                    holds[src][cid] = bal - moved
                new[cid] = opened[self.new_code][cid] = moved
                switchers += 1
        holders = {cid for s in self.sources for cid in holds[s]}
        fresh = _f(switchers * rng.uniform(0.22, 0.32))
        while fresh > 0:
            p = rng.choice(self.retail)
            if p.cid in new or p.cid in holders:
                continue
            new[p.cid] = opened[self.new_code][p.cid] = self._draw(self.new_code)
            fresh -= 1

    def _emit(self, code: str, t: int, before: dict[str, int], after: dict[str, int], opened: dict[str, int],
              facts: Facts, econ: Econ) -> None:
        spec = self.specs[code]
        agg: dict[str, list[int]] = {}  # branch → balance, previous balance, customers, new, lost, inflow
        for cid, bal in after.items():
            a = agg.setdefault(self.branch_of[cid], [0, 0, 0, 0, 0, 0])
            a[0] += bal
            a[2] += 1
            old = before.get(cid)
            if old is None:
                a[3] += 1
                a[5] += bal
            elif bal > old:
                a[5] += bal - old
        for cid, old in before.items():
            a = agg.setdefault(self.branch_of[cid], [0, 0, 0, 0, 0, 0])
            a[1] += old
            if cid not in after:
                a[4] += 1
        for b in sorted(agg):
            bal, prev_bal, customers, new, lost, inflow = agg[b]
            if customers == 0:
                continue
            if t == self.launch[code]:
                prev_bal = 0
            facts.row(spec, econ, b, t, bal, prev_bal, customers, new, lost, volume=inflow)


# --- everything ------------------------------------------------------------------------------------


def generate(cat: Catalog, rng: random.Random) -> Business:
    biz = Business()
    curve = Curve(rng)
    biz.ftp = curve.rows()
    biz.competitors = competitor_rows(rng)
    biz.customers, people = make_customers(cat, rng)
    weight: dict[str, float] = {HEAD: 1.0}
    for branch, subs in cat.subs.items():
        weight[branch] = 1.0
        for s in subs:
            weight[s] = 1.5 if s.endswith("01") else rng.uniform(0.6, 1.3)
    facts = Facts(curve, rng, biz.metrics)
    econs = {spec.code: make_econ(spec, rng, cat.planted) for spec in cat.specs}
    biz.holdings = HoldingSim(cat, people, rng).run(facts, econs)
    book = LoanBook(cat, people, rng)
    held = set(cat.holding_codes)
    for spec in cat.specs:
        if spec.code in held:
            continue
        econ = econs[spec.code]
        branches = selling_branches(spec, cat, rng)
        span = live_range(spec)
        if spec.category == "loan" and span is not None and span[1] == LATEST:
            loans = book.make(spec, branches, weight)
            book.loans += loans
            book.classify(spec, econ, loans)
            book.metrics(spec, econ, loans, facts)
        else:
            aggregate(spec, econ, branches, weight, facts, rng, cat.planted)
    biz.metrics.sort(key=lambda r: (r[0], r[1], r[2]))
    biz.loans = book.rows()
    return biz
