"""`puyi bench metrics`: metric-question latency on the loaded bank and on a synthetic bank of
10 million fact rows, and the alert run over 1 million loans.

1. The bank loaded in the Puyi database (the demo bank after `puyi setup`): about twenty metric
   questions made from that bank's own names, asked through `Assistant.ask` (deterministic, no LLM)
   by a bank-wide user, a branch relationship manager and a sub-branch one; p50/p95.
2. A synthetic bank in its own database on the same server (`puyi_bench_metrics`, migrated through
   core.db): 1 head office, 20 branches, 300 sub-branches, 500 sellable products in 50 clusters and
   as many months as it takes to reach N fact rows, filled with INSERT … SELECT generate_series, the
   roll-ups refreshed with tools.facts.refresh_rollups. The same question shapes, with the synthetic
   names, as the same three kinds of user. Kept for the next run when N is unchanged.
3. N synthetic loans there, and `tools.alerts.run_alerts` timed on them.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.db import Database, open_database
from core.settings import Settings, get_settings
from eval.bench import percentile
from tools.periods import label_for, shift

SYNTHETIC_DB = "puyi_bench_metrics"
SHAPE_VERSION = 1  # bump when the synthetic bank's shape changes, so an old one is rebuilt
LATEST = date(2026, 10, 1)
BRANCHES, SUBS_PER_BRANCH = 20, 15
CATEGORIES = (("deposit", "存款", 120), ("loan", "贷款", 150), ("payment", "支付", 60),
              ("intermediary", "代销", 110), ("market", "同业", 60))  # 500 sellable products
SEGMENTS = ("retail", "corporate", "inclusive", "interbank")
TARGET_MS = 300.0
TARGET_ALERT_S = 10.0
ROUNDS = 3


@dataclass
class Timing:
    label: str
    facts: int
    samples: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def p95(self) -> float:
        return percentile(self.samples, 95)


def _one(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    if row is None:
        return None
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


# --- questions -----------------------------------------------------------------------------------------


def metric_questions(conn: psycopg.Connection[Any], branch_name: str | None) -> list[str]:
    """About twenty metric question shapes, made from whatever bank is loaded (never the demo's names)."""
    def name(sql: str, params: dict[str, Any] | None = None) -> str | None:
        value = _one(conn, sql, params)
        return str(value) if value is not None else None

    # The loan and deposit products booked in the most branches in the latest month, so that every
    # kind of asker has figures for them.
    widest = (
        "SELECT p.name FROM metrics_monthly m JOIN products p ON p.code = m.product_code"
        " WHERE m.month = (SELECT latest_month FROM metrics_meta WHERE id = 1) AND p.category = %(c)s"
        " GROUP BY p.code, p.name ORDER BY count(DISTINCT m.branch_code) DESC, p.code LIMIT 1"
    )
    loan, deposit = name(widest, {"c": "loan"}), name(widest, {"c": "deposit"})
    cluster = name("SELECT name FROM products WHERE level = 'cluster' ORDER BY code LIMIT 1")
    branch = branch_name or name(
        "SELECT b.name FROM branches b WHERE EXISTS (SELECT 1 FROM branches c WHERE c.parent_code = b.code)"
        " AND b.parent_code IS NOT NULL ORDER BY b.code LIMIT 1"
    )
    questions = [
        "贷款类净贡献前十的产品",
        "上个月存款余额环比变化",
        "近6个月贷款类余额趋势",
        "各分行存款余额排名",
        "各大类余额占比",
        "不良率最高的5个产品",
        "今年以来各大类净贡献",
        "近3个月万户投诉率最高的产品",
        "本月新增客户前10的产品",
        "零售贷款余额同比",
        "上季度手续费收入",
        "对公存款日均余额前五",
        "各客群净利息收入",
        "满意度最低的5个产品",
        "贷款类各聚类产品的余额占比",
    ]
    if loan:
        questions += [f"上月{loan}的不良率是多少", f"{loan}近12个月逾期率走势"]
    if deposit:
        questions.append(f"{deposit}的余额同比")
    if cluster:
        questions.append(f"{cluster}的客户数")
    if branch:
        questions += [f"{branch}各机构的贷款余额", f"{branch}的不良率"]
    return questions


def _askers(conn: psycopg.Connection[Any]) -> list[tuple[str, str | None, str | None]]:
    """(kind, user id, the branch name that user's branch questions name): a bank-wide user, an rm of a
    branch with sub-branches and an rm of a sub-branch, those the bank has."""
    wide = _one(conn, "SELECT user_id FROM users WHERE role IN ('admin', 'designer', 'risk') ORDER BY role, user_id LIMIT 1")
    out: list[tuple[str, str | None, str | None]] = [("全行用户", wide, None)]
    for kind, has_children in (("分行客户经理", True), ("支行客户经理", False)):
        row = conn.execute(
            "SELECT u.user_id, b.name FROM users u JOIN branches b ON b.code = u.branch_code"
            " WHERE u.role = 'rm' AND b.parent_code IS NOT NULL AND"
            " EXISTS (SELECT 1 FROM branches c WHERE c.parent_code = b.code) = %(h)s ORDER BY u.user_id LIMIT 1",
            {"h": has_children},
        ).fetchone()
        if row is not None:
            values = list(row.values()) if isinstance(row, dict) else list(row)
            out.append((kind, str(values[0]), str(values[1])))
    return out


def time_questions(db: Database, label: str, facts: int, rounds: int = ROUNDS) -> Iterator[str | list[Timing]]:
    """Ask every question shape as each kind of user: one warm-up pass, then `rounds` timed passes."""
    from agents.service import Assistant

    assistant = Assistant(db)
    with db.connection() as conn:
        askers = _askers(conn)
        plan = [(kind, user, q) for kind, user, branch in askers for q in metric_questions(conn, branch)]
    routes: dict[str, int] = {}
    unanswered: list[str] = []
    for kind, user, q in plan:
        a = assistant.ask(q, user_id=user)
        routes[a.route] = routes.get(a.route, 0) + 1
        if not any(c["name"] == "query_metric" and "error" not in c["result"] for c in a.data["tool_calls"]):
            unanswered.append(f"{q}（{kind}）：{a.answer[:60]}")
    samples: dict[str, list[float]] = {kind: [] for kind, _, _ in askers}
    slowest: tuple[float, str] = (0.0, "")
    for _ in range(rounds):
        for kind, user, q in plan:
            t0 = time.perf_counter()
            assistant.ask(q, user_id=user)
            ms = (time.perf_counter() - t0) * 1000
            samples[kind].append(ms)
            slowest = max(slowest, (ms, f"{q}（{kind}）"))
    per_user = len(plan) // max(1, len(askers))
    yield (f"{label}：{len(askers)} 类提问人 × 约 {per_user} 个问题 × {rounds} 轮；路由 "
           + "，".join(f"{k} {v}" for k, v in sorted(routes.items())) + f"；最慢 {slowest[0]:.0f} ms：{slowest[1]}")
    for line in unanswered:
        yield f"  未给出数字：{line}"
    yield [Timing(f"{label}（{kind}）", facts, s) for kind, s in samples.items()]


# --- the synthetic bank ----------------------------------------------------------------------------------


def synthetic_settings(settings: Settings, db: Database, name: str = SYNTHETIC_DB) -> Settings:
    """A copy of the settings pointing at database `name` on the same server, created if missing."""
    params = conninfo_to_dict(db.url)
    with psycopg.connect(db.url, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": name}).fetchone() is None:
            admin.execute(f'CREATE DATABASE "{name}"')  # a fixed name from code, never user text
    params["dbname"] = name
    return settings.model_copy(update={"database_url": make_conninfo("", **params)})


def _shape(rows: int) -> tuple[int, int, int]:
    """(sub-branches, products, months) for about `rows` fact rows: 300 × 500 × as many months as needed;
    a small run keeps a year of months and fewer products."""
    leaves = BRANCHES * SUBS_PER_BRANCH
    products = sum(n for _, _, n in CATEGORIES)
    if rows < leaves * products * 12:
        products = max(10, rows // (leaves * 12))
    return leaves, products, max(1, math.ceil(rows / (leaves * products)))


def _stored(conn: psycopg.Connection[Any]) -> dict[str, Any] | None:
    conn.execute("CREATE TABLE IF NOT EXISTS bench_synthetic (id int PRIMARY KEY, version int NOT NULL,"
                 " target_rows bigint NOT NULL, fact_rows bigint NOT NULL, loans bigint NOT NULL DEFAULT 0)")
    row = conn.execute("SELECT version, target_rows, fact_rows, loans FROM bench_synthetic WHERE id = 1").fetchone()
    return dict(row) if row is not None else None


def _products(products: int) -> list[tuple[str, str, str, str]]:
    """(code, name, category, segment) of the synthetic sellable products, spread over the categories."""
    total = sum(n for _, _, n in CATEGORIES)
    out: list[tuple[str, str, str, str]] = []
    for key, word, n in CATEGORIES:
        for i in range(1, max(1, round(n * products / total)) + 1):
            out.append((f"{key[0].upper()}{len(out) + 1:04d}", f"合成{word}{i:03d}号", key, SEGMENTS[len(out) % 4]))
    return out


def build_synthetic(conn: psycopg.Connection[Any], rows: int) -> Generator[str, None, int]:
    """Replace the synthetic bank's catalogue, branches, users and facts, saying how far it got;
    returns the fact rows."""
    from tools.facts import refresh_rollups

    leaves, n_products, months = _shape(rows)
    products = _products(n_products)
    first = shift(LATEST, -(months - 1))
    yield (f"生成合成银行：{BRANCHES} 家分行、{leaves} 家支行、{len(products)} 个可售产品、{months} 个月"
        f"（{label_for(first, LATEST)}），约 {leaves * len(products) * months:,} 行事实")
    conn.execute("TRUNCATE branches, branch_closure, users, products, product_links, metrics_monthly,"
                 " metrics_rollup, metrics_meta, loans, customers, alert_events, alert_dispositions, alert_runs"
                 " RESTART IDENTITY CASCADE")
    conn.execute("INSERT INTO branches (code, name, parent_code, level) VALUES ('H000', '合成银行总行', NULL, 'head')")
    conn.execute(
        "INSERT INTO branches (code, name, parent_code, level)"
        " SELECT format('B%%s', lpad(b::text, 2, '0')), format('第%%s分行', lpad(b::text, 2, '0')), 'H000', 'branch'"
        " FROM generate_series(1, %(b)s::int) b", {"b": BRANCHES})
    conn.execute(
        "INSERT INTO branches (code, name, parent_code, level)"
        " SELECT format('S%%s%%s', lpad(b::text, 2, '0'), lpad(s::text, 2, '0')),"
        "        format('第%%s分行%%s号支行', lpad(b::text, 2, '0'), lpad(s::text, 2, '0')),"
        "        format('B%%s', lpad(b::text, 2, '0')), 'sub_branch'"
        " FROM generate_series(1, %(b)s::int) b, generate_series(1, %(s)s::int) s", {"b": BRANCHES, "s": SUBS_PER_BRANCH})
    conn.execute("INSERT INTO branch_closure SELECT code, code, 0 FROM branches")
    conn.execute("INSERT INTO branch_closure SELECT parent_code, code, 1 FROM branches WHERE parent_code IS NOT NULL")
    conn.execute("INSERT INTO branch_closure SELECT 'H000', code, 2 FROM branches WHERE level = 'sub_branch'")
    conn.execute(
        "INSERT INTO users (user_id, name, role, branch_code) VALUES"
        " ('bench_admin', '基准管理员', 'admin', 'H000'), ('bench_rm_branch', '基准分行经理', 'rm', 'B01'),"
        " ('bench_rm_leaf', '基准支行经理', 'rm', 'S0101')")
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO products (code, name, level, category, segment, status) VALUES"
            " (%(c)s, %(n)s, 'sellable', %(k)s, %(s)s, 'operating')",
            [{"c": c, "n": n, "k": k, "s": s} for c, n, k, s in products])
        clusters = [(f"C{k[0].upper()}{j:02d}", f"合成{w}聚类{j:02d}", k) for k, w, _ in CATEGORIES for j in range(1, 11)]
        cur.executemany(
            "INSERT INTO products (code, name, level, category, segment, status) VALUES"
            " (%(c)s, %(n)s, 'cluster', %(k)s, 'all', 'operating')",
            [{"c": c, "n": n, "k": k} for c, n, k in clusters])
        by_category: dict[str, int] = {}
        links = []
        for code, _, key, _ in products:
            by_category[key] = by_category.get(key, 0) + 1
            links.append({"f": code, "t": f"C{key[0].upper()}{(by_category[key] - 1) % 10 + 1:02d}"})
        cur.executemany("INSERT INTO product_links (from_code, to_code) VALUES (%(f)s, %(t)s)", links)

    # Secondary indexes and the primary key are rebuilt once after the load: much faster than
    # maintaining them row by row over ten million inserts.
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'metrics_monthly'"
        " AND indexname <> 'metrics_monthly_pkey'").fetchall()
    for ix in indexes:
        conn.execute(f'DROP INDEX "{_val(ix, 0)}"')
    conn.execute("ALTER TABLE metrics_monthly DROP CONSTRAINT metrics_monthly_pkey")
    conn.commit()
    started = time.perf_counter()
    for i in range(months):
        month = shift(first, i)
        conn.execute(_FACTS_SQL, {"m": month, "i": i})
        conn.commit()
        if i % 6 == 5 or i == months - 1:
            done = (i + 1) * leaves * len(products)
            yield (f"  事实 {i + 1}/{months} 个月，{done:,} 行，{time.perf_counter() - started:.0f} s")
    conn.execute("SET maintenance_work_mem = '512MB'")
    yield ("  重建主键与索引……")
    conn.execute("ALTER TABLE metrics_monthly ADD PRIMARY KEY (month, product_code, branch_code)")
    for ix in indexes:
        conn.execute(str(_val(ix, 1)))
    conn.execute("ANALYZE metrics_monthly")
    conn.commit()
    yield ("  刷新汇总表（tools.facts.refresh_rollups）……")
    t0 = time.perf_counter()
    with conn.transaction():
        rolled = refresh_rollups(conn)
    yield (f"  汇总表 {rolled:,} 行，{time.perf_counter() - t0:.0f} s")
    conn.execute("ANALYZE")
    return int(_one(conn, "SELECT count(*) FROM metrics_monthly"))


def _val(row: Any, i: int) -> Any:
    return list(row.values())[i] if isinstance(row, dict) else row[i]


# Ten-odd facts per row, drawn per row (the sub-select keeps one draw per row for the related columns).
_FACTS_SQL = """
INSERT INTO metrics_monthly (month, product_code, branch_code, balance, avg_balance, customers, new_customers,
    lost_customers, volume, interest_income, interest_expense, fee_income, opex, provision, npl_balance,
    overdue_balance, complaints, satisfaction)
SELECT %(m)s, pc, bc, round(bal, 2), round(bal * 0.97, 2), cust, cust / 20, cust / 40, round(bal * 0.3, 2),
       round(bal * CASE cat WHEN 'loan' THEN 0.004 WHEN 'deposit' THEN 0.002 ELSE 0.001 END, 2),
       round(bal * CASE WHEN cat IN ('loan', 'deposit') THEN 0.002 ELSE 0 END, 2),
       round(cust * CASE WHEN cat IN ('intermediary', 'payment') THEN 30 ELSE 1 END, 2),
       round(bal * 0.0003, 2), round(bal * CASE cat WHEN 'loan' THEN 0.0002 ELSE 0 END, 2),
       CASE WHEN cat = 'loan' THEN round(bal * r1 * 0.03, 2) END,
       CASE WHEN cat = 'loan' THEN round(bal * r2 * 0.04, 2) END,
       floor(r1 * 3)::bigint, round((85 + r2 * 10)::numeric, 1)
FROM (SELECT p.code AS pc, p.category AS cat, b.code AS bc,
             (1e5 + random() * 1e7)::numeric * (1 + 0.01 * %(i)s) AS bal, (10 + floor(random() * 500))::bigint AS cust,
             random()::numeric AS r1, random()::numeric AS r2
      FROM products p CROSS JOIN branches b WHERE p.level = 'sellable' AND b.level = 'sub_branch') x
"""


def build_loans(conn: psycopg.Connection[Any], n: int) -> Iterator[str]:
    """N loans of the synthetic loan products over the sub-branches, at the latest month end."""
    conn.execute("TRUNCATE loans, customers, alert_events, alert_dispositions, alert_runs RESTART IDENTITY CASCADE")
    customers = max(1, n // 2)
    conn.execute(
        "INSERT INTO customers (customer_id, name, segment, branch_code)"
        " SELECT format('C%%s', lpad(i::text, 8, '0')), format('合成客户%%s', i), 'retail',"
        "        (SELECT array_agg(code ORDER BY code) FROM branches WHERE level = 'sub_branch')[1 + i %% %(l)s]"
        " FROM generate_series(1, %(c)s::int) i", {"c": customers, "l": BRANCHES * SUBS_PER_BRANCH})
    step = 250_000
    started = time.perf_counter()
    for lo in range(1, n + 1, step):
        hi = min(n, lo + step - 1)
        conn.execute(_LOANS_SQL, {"lo": lo, "hi": hi, "c": customers})
        conn.commit()
        yield (f"  贷款 {hi:,}/{n:,} 笔，{time.perf_counter() - started:.0f} s")
    conn.execute("ANALYZE loans")
    conn.execute("ANALYZE customers")


_LOANS_SQL = """
WITH lp AS (SELECT array_agg(code ORDER BY code) AS codes FROM products WHERE level = 'sellable' AND category = 'loan'),
     lb AS (SELECT array_agg(code ORDER BY code) AS codes FROM branches WHERE level = 'sub_branch')
INSERT INTO loans (loan_id, customer_id, product_code, branch_code, amount, balance, rate, start_date, maturity_date,
                   five_class, overdue_days)
SELECT format('L%%s', lpad(i::text, 9, '0')), format('C%%s', lpad((1 + i %% %(c)s)::text, 8, '0')),
       lp.codes[1 + i %% cardinality(lp.codes)], lb.codes[1 + (i / 7) %% cardinality(lb.codes)],
       round(amt, 2), round(amt * (0.3 + 0.7 * r), 2), round((3 + r * 3)::numeric, 2),
       date '2023-01-01' + (i %% 1300)::int, date '2027-01-01' + (i %% 2000)::int,
       CASE WHEN r < 0.93 THEN '正常' WHEN r < 0.97 THEN '关注' WHEN r < 0.985 THEN '次级'
            WHEN r < 0.995 THEN '可疑' ELSE '损失' END,
       CASE WHEN r < 0.93 THEN 0 ELSE (r * 400)::int END
FROM (SELECT i, (1e4 + random() * 2e6)::numeric AS amt, random()::numeric AS r
      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) i) g, lp, lb
"""


# --- the benchmark ------------------------------------------------------------------------------------


def _timings(gen: Iterator[str | list[Timing]], into: list[Timing]) -> Iterator[str]:
    for item in gen:
        if isinstance(item, str):
            yield item
        else:
            into.extend(item)


def bench_metrics(
    rows: int = 10_000_000,
    loans: int = 1_000_000,
    skip_synthetic: bool = False,
    settings: Settings | None = None,
    rounds: int = ROUNDS,
    synthetic_db: str = SYNTHETIC_DB,
) -> Iterator[str]:
    settings = settings or get_settings()
    started = time.perf_counter()
    timings: list[Timing] = []
    alerts: tuple[float, dict[str, Any]] | None = None
    loans_done = 0
    db = open_database(settings)
    try:
        with db.connection() as conn:
            facts = int(_one(conn, "SELECT count(*) FROM metrics_monthly") or 0)
        if facts:
            yield f"已导入的银行：{facts:,} 行月度事实；每题经 Assistant.ask（确定性路由与作答，不用 LLM）"
            yield from _timings(time_questions(db, "已导入银行", facts, rounds), timings)
        else:
            yield "数据库中还没有银行数据，已导入银行部分跳过：请先运行 `puyi setup`（或 `puyi demo` 后 `puyi import 目录`）。"

        if not skip_synthetic:
            sdb = open_database(synthetic_settings(settings, db, synthetic_db))
            try:
                with sdb.connection() as conn:
                    stored = _stored(conn)
                    conn.commit()
                    if stored and stored["version"] == SHAPE_VERSION and stored["target_rows"] == rows:
                        fact_rows = int(stored["fact_rows"])
                        yield f"复用已有的合成银行（数据库 {synthetic_db}）：{fact_rows:,} 行事实"
                    else:
                        t0 = time.perf_counter()
                        fact_rows = yield from build_synthetic(conn, rows)
                        conn.execute(
                            "INSERT INTO bench_synthetic (id, version, target_rows, fact_rows) VALUES"
                            " (1, %(v)s, %(t)s, %(f)s) ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
                            " target_rows = excluded.target_rows, fact_rows = excluded.fact_rows, loans = 0",
                            {"v": SHAPE_VERSION, "t": rows, "f": fact_rows})
                        conn.commit()
                        yield f"合成银行生成完毕（数据库 {synthetic_db}）：{fact_rows:,} 行事实，{time.perf_counter() - t0:.0f} s"
                yield from _timings(time_questions(sdb, "合成银行", fact_rows, rounds), timings)

                if loans > 0:
                    with sdb.connection() as conn:
                        stored = _stored(conn)
                        if stored and stored["loans"] == loans:
                            yield f"复用已有的 {loans:,} 笔合成贷款"
                        else:
                            yield f"生成 {loans:,} 笔合成贷款……"
                            yield from build_loans(conn, loans)
                            conn.execute("UPDATE bench_synthetic SET loans = %(n)s WHERE id = 1", {"n": loans})
                        conn.commit()
                        loans_done = int(_one(conn, "SELECT count(*) FROM loans") or 0)
                    try:
                        from tools.alerts import run_alerts
                    except ImportError:
                        yield "没有找到 tools.alerts.run_alerts，预警运行计时跳过。"
                    else:
                        t0 = time.perf_counter()
                        out = run_alerts(sdb)
                        alerts = (time.perf_counter() - t0, out)
                        yield (f"预警运行 run_alerts（{loans_done:,} 笔贷款，月份 {out.get('month')}）：触发 {out.get('fired')} 条，"
                               f"新增 {out.get('new')} 条，{alerts[0]:.2f} s")
            finally:
                sdb.close()
    finally:
        db.close()

    yield ""
    yield "| 场景 | 事实行数 | 样本数 | p50 (ms) | p95 (ms) | 目标 | 结果 |"
    yield "|---|---:|---:|---:|---:|---|---|"
    for t in timings:
        ok = "达标" if t.p95 <= TARGET_MS else "未达标"
        yield f"| {t.label} | {t.facts:,} | {len(t.samples)} | {t.p50:.1f} | {t.p95:.1f} | p95 ≤ {TARGET_MS:.0f} ms | {ok} |"
    if alerts is not None:
        ok = "达标" if alerts[0] <= TARGET_ALERT_S else "未达标"
        yield f"| 预警运行（{loans_done:,} 笔贷款） | — | 1 | — | {alerts[0] * 1000:.0f} | ≤ {TARGET_ALERT_S:.0f} s | {ok} |"
    yield f"目标：10,000,000 行事实时指标问题 p95 ≤ {TARGET_MS:.0f} ms；1,000,000 笔贷款时预警运行 ≤ {TARGET_ALERT_S:.0f} s"
    yield f"总耗时：{time.perf_counter() - started:.0f} s"
