"""Catalogue tools against the small bank, imported into the embedded PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core.access import LOCAL_ADMIN
from core.db import Database
from tools import catalog
from tools.context import ToolContext


@pytest.fixture()
def ctx(loaded_db: Database) -> Iterator[ToolContext]:
    with loaded_db.connection() as conn:
        yield ToolContext(conn=conn, principal=LOCAL_ADMIN)


def codes(result: dict[str, Any]) -> list[str]:
    return [c["code"] for c in result["candidates"]]


@pytest.mark.parametrize(
    ("query", "expected", "how"),
    [
        ("SL001", "SL001", "code"),
        ("sl001", "SL001", "code"),
        ("薪易快贷", "SL001", "name"),
        ("活期宝", "SD002", "alias"),
        ("XD0302", "SL001", "source_code"),
        ("薪易快带", "SL001", "pinyin"),  # homophone typed through a pinyin input method
        ("薪易快", "SL001", "partial"),
        ("聚合收钱码", "SP001", "fuzzy"),  # one wrong character, not a homophone
        ("房抵经营", "SL004", "partial"),
    ],
)
def test_find_product_by_every_kind_of_reference(ctx: ToolContext, query: str, expected: str, how: str):
    result = catalog.find_product(ctx, query)
    assert result["status"] == "found", result
    assert codes(result) == [expected]
    assert result["candidates"][0]["how"] == how


def test_ambiguous_name_returns_a_short_list_not_a_guess(ctx: ToolContext):
    result = catalog.find_product(ctx, "快贷")
    assert result["status"] == "ambiguous"
    assert set(codes(result)) == {"SL001", "SL002"}


def test_unknown_name_is_not_found(ctx: ToolContext):
    assert catalog.find_product(ctx, "火星移民贷")["status"] == "not_found"
    assert catalog.find_product(ctx, "   ")["status"] == "not_found"


def test_product_elements_and_neighbours(ctx: ToolContext):
    p = catalog.get_product(ctx, "SL001")
    elements = {e["element"]: (e["value"], e["unit"]) for e in p["elements"]}
    assert elements["rate_min"] == ("3.45", "%")
    assert elements["amount_max"] == ("300000", "元")
    assert [x["code"] for x in p["parents"]] == []
    assert [x["code"] for x in p["children"]] == ["CL01"]
    assert {(s["system"], s["source_code"]) for s in p["system_codes"]} == {("credit", "XD0301"), ("credit", "XD0302")}
    assert catalog.get_product(ctx, "NOPE")["error"] == "not_found"


def test_trace_down_follows_bundles_to_every_subject(ctx: ToolContext):
    t = catalog.trace_down(ctx, "SD001")
    assert [[n["code"] for n in p] for p in t["paths"]] == [
        ["SD001", "CD01", "BD01", "AD01", "201101"],
        ["SD001", "CD01", "BD01", "AD02", "201102"],
    ]
    assert [s["code"] for s in t["subjects"]] == ["201101", "201102"]
    assert t["complete"] is True
    assert [n["level"] for n in t["paths"][0]] == ["sellable", "cluster", "base", "atomic", "subject"]


def test_trace_up_from_a_subject_and_from_a_middle_level(ctx: ToolContext):
    up = catalog.trace_up(ctx, "130101")
    assert up["level"] == "subject"
    assert {s["code"] for s in up["sellable"]} == {"SL001", "SL002", "SL009", "SL004"}
    assert all(p[-1]["code"] == "130101" and p[0]["level"] == "sellable" for p in up["paths"])
    assert {s["code"] for s in catalog.trace_up(ctx, "CL01")["sellable"]} == {"SL001", "SL002", "SL009"}
    assert catalog.trace_up(ctx, "999999")["error"] == "not_found"


def test_map_source_code_is_many_to_one(ctx: ToolContext):
    assert [m["code"] for m in catalog.map_source_code(ctx, "DP1001")["matches"]] == ["SD001"]
    assert [m["code"] for m in catalog.map_source_code(ctx, "dp1002", system="core")["matches"]] == ["SD001"]
    assert catalog.map_source_code(ctx, "DP1001", system="credit")["matches"] == []


def test_list_and_count_with_filters(ctx: ToolContext):
    loans = catalog.list_products(ctx, category="loan")
    assert loans["total"] == 4 and {i["code"] for i in loans["items"]} == {"SL001", "SL002", "SL004", "SL009"}
    assert catalog.list_products(ctx, category="loan", status="suspended")["total"] == 1
    assert catalog.list_products(ctx, segment="inclusive", level="sellable")["total"] == 2
    by_level = catalog.count_products(ctx, "level", level=None)
    assert {g["key"]: g["count"] for g in by_level["groups"]} == {"sellable": 9, "cluster": 6, "base": 6, "atomic": 7}
    assert by_level["total"] == 28
    with pytest.raises(ValueError):
        catalog.count_products(ctx, "name; DROP TABLE products")


def test_name_index_reloads_when_the_catalogue_changes(loaded_db: Database):
    with loaded_db.connection() as conn:
        ctx = ToolContext(conn=conn, principal=LOCAL_ADMIN)
        assert catalog.find_product(ctx, "临时测试产品")["status"] == "not_found"
        with conn.transaction(force_rollback=True):
            conn.execute(
                "INSERT INTO products (code, name, level, category, segment, status)"
                " VALUES ('TMP1', '临时测试产品', 'sellable', 'loan', 'retail', 'designing')"
            )
            assert codes(catalog.find_product(ctx, "临时测试产品")) == ["TMP1"]
        assert catalog.find_product(ctx, "临时测试产品")["status"] == "not_found"


def test_a_latin_alias_is_a_whole_word():
    from tools.catalog import CatalogIndex

    index = CatalogIndex(1, {"P1": {"code": "P1", "name": "聚合收单", "level": "sellable", "category": "payment",
                                     "segment": "corporate", "status": "operating", "aliases": ["POS"]}},
                         {}, {}, [("聚合收单", "P1", "name"), ("pos", "P1", "alias")])
    assert [c.code for c in index.mentions("POS机怎么申请").products] == ["P1"]
    assert [c.code for c in index.mentions("我想了解 pos 收单").products] == ["P1"]
    assert index.mentions("fixed deposit rates").products == []
