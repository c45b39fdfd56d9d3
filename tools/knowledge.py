"""Knowledge tools: search the bank's documents and the regulations, with the asker's access.

The retriever (embedder + tokenizer) is heavy, so `KnowledgeBase` builds it once, on first use.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import psycopg

from core.access import Principal
from core.safety import neutralize
from core.settings import Settings
from retrieval.search import Hit, Retriever, SearchFilters
from tools.context import ToolContext

# A hit is relevant when the vector branch found it this similar to the question, or when the
# keyword branch matched enough of the question's terms. Tuned on the labelled set (eval/).
MIN_SIMILARITY = 0.895
MIN_KEYWORD_SHARE = 0.6

DOC_TYPE_NAMES = {"manual": "产品手册", "faq": "常见问答", "compliance": "合规要点", "notice": "通知公告",
                  "regulation": "法律法规", "other": "其他文件"}
TALKING_POINT_HEADINGS = re.compile(r"营销话术|话术|卖点|推荐理由|营销要点")


class KnowledgeBase:
    def __init__(self, settings: Settings, retriever: Retriever | None = None) -> None:
        self.settings = settings
        self._retriever = retriever
        self._lock = threading.Lock()

    def retriever(self, conn: psycopg.Connection[Any]) -> Retriever:
        if self._retriever is None:
            with self._lock:
                if self._retriever is None:
                    from ingest.knowledge import catalogue_words
                    from retrieval.embedders import make_embedder
                    from retrieval.tokenize import ChineseTokenizer

                    titles = [r["title"] for r in conn.execute("SELECT title FROM kb_documents")]
                    reranker = None
                    if self.settings.reranker_model:
                        from retrieval.rerank import CrossEncoderReranker

                        reranker = CrossEncoderReranker(self.settings.reranker_model)
                    self._retriever = Retriever(
                        make_embedder(self.settings), ChineseTokenizer(catalogue_words(conn, titles)),
                        reranker=reranker,
                    )
        return self._retriever

    def search(
        self, conn: psycopg.Connection[Any], principal: Principal, query: str, k: int = 5,
        doc_types: list[str] | None = None, products: list[str] | None = None, mode: str = "hybrid",
        doc_paths: list[str] | None = None,
    ) -> list[Hit]:
        filters = SearchFilters(access=principal.doc_access, doc_types=doc_types, products=products,
                                doc_paths=doc_paths)
        return self.retriever(conn).search(conn, query, filters, k=k, mode=mode)  # type: ignore[arg-type]

    def relevant_hits(
        self, conn: psycopg.Connection[Any], query: str, hits: list[Hit], products: list[str] | None = None
    ) -> list[Hit]:
        """The hits that answer the question at all (search always returns something)."""
        tokenizer = self.retriever(conn).tokenizer
        terms = set(tokenizer.tokens(query))

        def relevant(hit: Hit) -> bool:
            if products and not set(products) & set(hit.product_codes):
                # About another product: relevant only if it is a near paraphrase of the question.
                return hit.similarity is not None and hit.similarity >= MIN_SIMILARITY + 0.03
            if hit.similarity is not None and hit.similarity >= MIN_SIMILARITY:
                return True
            shared = terms & set(tokenizer.tokens(" ".join([hit.title, *hit.heading_path, hit.text])))
            return len(shared) >= 2 and len(shared) / len(terms) >= MIN_KEYWORD_SHARE

        return [h for h in hits if relevant(h)]


def citation(hit: Hit, snippet_chars: int = 240) -> dict[str, Any]:
    text = neutralize(hit.text)
    return {
        "chunk_id": hit.id,  # opens the cited passage (GET /api/passages/{chunk_id})
        "title": hit.title,
        "doc_type": hit.doc_type,
        "path": hit.doc_path,
        "snippet": text if len(text) <= snippet_chars else text[:snippet_chars] + "……",
        "score": round(hit.score, 4),
        "heading": " > ".join(hit.heading_path),
        "page": hit.page,
    }


def _kb(ctx: ToolContext) -> KnowledgeBase:
    if ctx.kb is None:
        raise RuntimeError("knowledge base not configured for this turn")
    return ctx.kb


def search_knowledge(
    ctx: ToolContext, query: str, products: list[str] | None = None, doc_types: list[str] | None = None, k: int = 5
) -> dict[str, Any]:
    """在本行产品手册、常见问答、合规要点、通知和法律法规中检索与问题相关的原文段落（按提问人的文档权限过滤），返回带出处的段落。"""
    kb = _kb(ctx)
    hits, relevant = [], []
    named = named_documents(ctx, query)
    if named:
        # A question that names a document ("《…》里…") is about that document: its own passages rank
        # first, whatever other documents say about the same words.
        hits = kb.search(ctx.conn, ctx.principal, query, k=k, doc_types=doc_types, doc_paths=named)
        relevant = kb.relevant_hits(ctx.conn, query, hits)
    if not relevant:
        hits = kb.search(ctx.conn, ctx.principal, query, k=k, doc_types=doc_types, products=products)
        relevant = kb.relevant_hits(ctx.conn, query, hits, products)
    if products and not relevant:
        # The product filter may be too narrow (a general rule applies to it): widen once.
        hits = kb.search(ctx.conn, ctx.principal, query, k=k, doc_types=doc_types)
        relevant = kb.relevant_hits(ctx.conn, query, hits, products)
    return {
        "query": query,
        "found": bool(relevant),
        "owner": suggest_owner(ctx, query, products),
        "passages": [{**citation(h, 2000), "relevant": h in relevant} for h in hits],
    }


def named_documents(ctx: ToolContext, query: str) -> list[str]:
    """Documents the asker may read that the question names: by its title in 《》, or by a title of 8 or more
    characters written out (a short title such as "存款业务" is too often just words of the question)."""
    rows = ctx.conn.execute(
        "SELECT path FROM kb_documents WHERE access = ANY(%(a)s) AND char_length(title) >= 2"
        " AND (strpos(%(q)s, '《' || title || '》') > 0 OR (char_length(title) >= 8 AND strpos(%(q)s, title) > 0))"
        " ORDER BY char_length(title) DESC, path LIMIT 5",
        {"a": list(ctx.principal.doc_access), "q": query},
    ).fetchall()
    return [r["path"] for r in rows]


# Topic words → the product category whose owning department (from the bank's own catalogue)
# is the best person to ask; compliance topics go to the compliance function, whatever its name.
_TOPIC_CATEGORIES = [
    (re.compile(r"理财|基金|保险|贵金属|代销|中间业务"), "intermediary"),
    (re.compile(r"贷|授信|还款|额度"), "loan"),
    (re.compile(r"存款|存单|储蓄|开户"), "deposit"),
    (re.compile(r"结算|收单|支付|转账|代发"), "payment"),
    (re.compile(r"同业|债券|票据|金融市场"), "market"),
]
_COMPLIANCE_TOPIC = re.compile(r"合规|反洗钱|双录|适当性|消保|消费者|个人信息|监管|法律|条例")


def suggest_owner(ctx: ToolContext, query: str, products: list[str] | None) -> str:
    """Who to ask when the documents do not answer: the product's owner, else by topic."""
    if products:
        row = ctx.conn.execute(
            "SELECT string_agg(DISTINCT owner_dept, '、') AS d FROM products WHERE code = ANY(%(c)s) AND owner_dept <> ''",
            {"c": products},
        ).fetchone()
        if row and row["d"]:
            return str(row["d"])
    if _COMPLIANCE_TOPIC.search(query):
        return "本行合规管理部门"
    for pattern, category in _TOPIC_CATEGORIES:
        if pattern.search(query):
            row = ctx.conn.execute(
                "SELECT owner_dept FROM products WHERE category = %(c)s AND level = 'sellable' AND owner_dept <> ''"
                " GROUP BY owner_dept ORDER BY count(*) DESC, owner_dept LIMIT 1",
                {"c": category},
            ).fetchone()
            if row:
                return str(row["owner_dept"])
    return "相关产品的主管部门"


def _product_chunks(ctx: ToolContext, product_code: str, doc_types: list[str], limit: int | None = None) -> list[Any]:
    """Chunks tagged with a product, of the given document types, that the asker may read."""
    return ctx.conn.execute(
        "SELECT id, doc_path, title, doc_type, heading_path, page, text FROM kb_chunks"
        " WHERE %(c)s = ANY(product_codes) AND doc_type = ANY(%(t)s) AND access = ANY(%(a)s)"
        " ORDER BY doc_path, ordinal LIMIT %(n)s",
        {"c": product_code, "t": doc_types, "a": list(ctx.principal.doc_access), "n": limit},
    ).fetchall()


def talking_points(ctx: ToolContext, product_code: str) -> dict[str, Any]:
    """某个产品的营销话术（来自该产品手册中的话术/卖点章节），供客户经理使用。"""
    points = [
        r for r in _product_chunks(ctx, product_code, ["manual", "faq"])
        if any(TALKING_POINT_HEADINGS.search(h) for h in r["heading_path"]) or TALKING_POINT_HEADINGS.match(r["text"])
    ]
    return {"product_code": product_code, "points": [_row_citation(r) for r in points[:2]]}


def compliance_reminders(ctx: ToolContext, product_code: str) -> dict[str, Any]:
    """适用于某个产品或其所属大类的合规提醒（来自合规要点文件）。"""
    kb = _kb(ctx)
    reminders = [_row_citation(r) for r in _product_chunks(ctx, product_code, ["compliance"], limit=2)]
    if len(reminders) < 2:
        product = ctx.conn.execute(
            "SELECT name, category FROM products WHERE code = %(c)s", {"c": product_code}
        ).fetchone()
        if product:
            from tools.catalog import CATEGORY_NAMES

            query = f"{product['name']} {CATEGORY_NAMES.get(product['category'], '')} 合规 要求"
            for h in kb.search(ctx.conn, ctx.principal, query, k=4, doc_types=["compliance"]):
                if len(reminders) >= 2:
                    break
                if all(r["path"] != h.doc_path or r["snippet"] != citation(h)["snippet"] for r in reminders):
                    reminders.append(citation(h))
    return {"product_code": product_code, "reminders": reminders}


def _row_citation(r: dict[str, Any]) -> dict[str, Any]:
    hit = Hit(id=r["id"], doc_path=r["doc_path"], title=r["title"], doc_type=r["doc_type"],
              heading_path=list(r["heading_path"] or []), page=r["page"], kind="text", text=r["text"],
              product_codes=[], access="", score=1.0)
    return citation(hit, 400)
