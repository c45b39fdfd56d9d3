"""The bank data contract (`shared/data-contract.md`) as data: files, columns, types and keys.

The importer validates and loads from these specs alone, so a change to the contract is a change
here (and, for a new table column, a migration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnType = Literal["text", "int", "bigint", "decimal", "date", "month", "enum", "list"]

BRANCH_LEVELS = ("head", "branch", "sub_branch")
ROLES = ("rm", "designer", "risk", "admin")
PRODUCT_LEVELS = ("sellable", "cluster", "base", "atomic")
CATEGORIES = ("deposit", "loan", "payment", "intermediary", "market")
SEGMENTS = ("retail", "corporate", "inclusive", "interbank", "all")
STATUSES = ("designing", "admission", "building", "operating", "suspended", "retired")
CUSTOMER_SEGMENTS = ("retail", "corporate", "inclusive")
FIVE_CLASSES = ("正常", "关注", "次级", "可疑", "损失")
DOC_TYPES = ("manual", "faq", "compliance", "notice", "other")
ACCESS_LEVELS = ("public", "internal", "restricted")
# Sub-folders of docs/ that give a document its type when the manifest does not.
DOC_FOLDER_TYPES = ("manual", "faq", "compliance", "notice")
DOC_EXTENSIONS = (".md", ".txt", ".html", ".docx", ".pdf", ".xlsx", ".csv")

LEVEL_NAMES = {"sellable": "可售产品", "cluster": "聚类产品", "base": "基础产品", "atomic": "原子产品"}
BRANCH_LEVEL_NAMES = {"head": "总行", "branch": "分行", "sub_branch": "支行"}


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType = "text"
    # required: the header must have it and no cell may be empty; optional: absent or empty is fine.
    required: bool = True
    values: tuple[str, ...] = ()  # the enumeration, for type "enum"
    # An optional cell left empty loads as NULL; text columns declared NOT NULL DEFAULT '' load ''.
    nullable: bool = True
    # Required in the header but may be empty (branches.parent_code: empty for the head office).
    empty_ok: bool = False
    # What a filled cell must name: "branch", "product", "sellable" (a sellable product) or "customer"
    # (checked only when customers.csv is present). Graph references (parent_code, links, the
    # manifest) are checked by the importer itself.
    ref: str | None = None

    @property
    def may_be_empty(self) -> bool:
        return not self.required or self.empty_ok


@dataclass(frozen=True)
class FileSpec:
    name: str  # path relative to the bank folder
    table: str | None  # target table; None for files that are read but not loaded as a table
    required: bool
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # unique over the file; empty: no key
    # Further columns unique where filled (users.wecom_userid is UNIQUE in the schema).
    unique: tuple[str, ...] = ()
    keeps_extra: bool = False  # the table has `extra jsonb` for unknown columns
    description: str = ""
    column_index: dict[str, Column] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "column_index", {c.name: c for c in self.columns})

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


def _text(name: str, required: bool = True, nullable: bool = True, ref: str | None = None) -> Column:
    return Column(name, "text", required, nullable=nullable, ref=ref)


def _enum(name: str, values: tuple[str, ...], required: bool = True) -> Column:
    return Column(name, "enum", required, values)


def _dec(name: str, required: bool = True) -> Column:
    return Column(name, "decimal", required)


def _bigint(name: str, required: bool = True) -> Column:
    return Column(name, "bigint", required)


FILES: tuple[FileSpec, ...] = (
    FileSpec(
        "branches.csv", "branches", True,
        (_text("code"), _text("name"), Column("parent_code", empty_ok=True), _enum("level", BRANCH_LEVELS)),
        key=("code",), keeps_extra=True, description="机构",
    ),
    FileSpec(
        "users.csv", "users", True,
        (_text("user_id"), _text("name"), _enum("role", ROLES), _text("branch_code", ref="branch"),
         _text("wecom_userid", required=False)),
        key=("user_id",), unique=("wecom_userid",), keeps_extra=True, description="用户",
    ),
    FileSpec(
        "products.csv", "products", True,
        (
            _text("code"), _text("name"), _enum("level", PRODUCT_LEVELS), _enum("category", CATEGORIES),
            _enum("segment", SEGMENTS), _enum("status", STATUSES), _text("owner_dept"),
            Column("launch_date", "date", False), Column("retire_date", "date", False),
            Column("aliases", "list", False), _text("description", required=False, nullable=False),
        ),
        key=("code",), keeps_extra=True, description="产品目录",
    ),
    FileSpec("subjects.csv", "subjects", True, (_text("code"), _text("name")), key=("code",),
             description="核算科目"),
    FileSpec("product_links.csv", "product_links", True, (_text("from_code"), _text("to_code")),
             key=("from_code", "to_code"), description="穿透链接"),
    FileSpec(
        "product_elements.csv", "product_elements", True,
        (_text("product_code", ref="product"), _text("element"), _text("value"), _text("unit", required=False, nullable=False)),
        key=("product_code", "element"), description="产品要素",
    ),
    FileSpec("system_codes.csv", "system_codes", False,
             (_text("system"), _text("source_code"), _text("product_code", ref="product")),
             key=("system", "source_code"), description="源系统代码"),
    FileSpec(
        "metrics_monthly.csv", "metrics_monthly", True,
        (
            Column("month", "month"), _text("product_code", ref="sellable"), _text("branch_code", ref="branch"),
            _dec("balance"),
            _dec("avg_balance", False), _bigint("customers"), _bigint("new_customers", False),
            _bigint("lost_customers", False), _dec("volume", False), _dec("interest_income"),
            _dec("interest_expense"), _dec("fee_income"), _dec("opex", False), _dec("provision", False),
            _dec("npl_balance", False), _dec("overdue_balance", False), _bigint("complaints", False),
            _dec("satisfaction", False),
        ),
        key=("month", "product_code", "branch_code"), description="月度经营数据",
    ),
    FileSpec(
        "customers.csv", "customers", False,
        (_text("customer_id"), _text("name"), _enum("segment", CUSTOMER_SEGMENTS), _text("branch_code", ref="branch"),
         _text("id_number", required=False), _text("phone", required=False)),
        key=("customer_id",), keeps_extra=True, description="客户",
    ),
    FileSpec(
        "holdings.csv", "holdings", False,
        (Column("month", "month"), _text("customer_id", ref="customer"), _text("product_code", ref="sellable"),
         _dec("balance")),
        key=("month", "customer_id", "product_code"), description="客户持有",
    ),
    FileSpec(
        "loans.csv", "loans", False,
        (
            _text("loan_id"), _text("customer_id", ref="customer"), _text("product_code", ref="sellable"),
            _text("branch_code", ref="branch"),
            _dec("amount"), _dec("balance"), _dec("rate", False), Column("start_date", "date"),
            Column("maturity_date", "date"), _enum("five_class", FIVE_CLASSES), Column("overdue_days", "int"),
        ),
        key=("loan_id",), keeps_extra=True, description="贷款明细",
    ),
    FileSpec("ftp_curve.csv", "ftp_curve", False,
             (Column("as_of", "date"), Column("term_months", "int"), _dec("rate")),
             key=("as_of", "term_months"), description="FTP 曲线"),
    FileSpec(
        "competitor_rates.csv", "competitor_rates", False,
        (Column("as_of", "date"), _text("bank"), _text("product_type"), Column("term_months", "int"),
         _dec("rate"), _text("notes", required=False, nullable=False)),
        description="竞品利率",
    ),
    # Read for the documents table; doc_type and access fall back to the sub-folder and `internal`.
    FileSpec(
        "docs/manifest.csv", None, False,
        (_text("path"), _text("title", required=False), _enum("doc_type", DOC_TYPES, required=False),
         Column("product_codes", "list", False, ref="product"), _enum("access", ACCESS_LEVELS, required=False),
         Column("effective_date", "date", False)),
        key=("path",), description="文档清单",
    ),
)

FILE_SPECS: dict[str, FileSpec] = {f.name: f for f in FILES}
ALERT_RULES_FILE = "alert_rules.yaml"
DOCS_DIR = "docs"
MANIFEST_FILE = "docs/manifest.csv"

# The tables an import replaces as a whole (documents included), in load order.
BANK_TABLES: tuple[str, ...] = (
    *(f.table for f in FILES if f.table is not None), "branch_closure", "documents", "bank_files",
)

