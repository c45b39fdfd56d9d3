"""Deterministic router: Chinese intent classification plus entity linking against the catalogue.

It needs no LLM. Each route has weighted cue patterns; the highest score wins, ties broken by
`_PRIORITY`. Refusals are checked first: they are about what may not be done, not what is asked.
"""

from __future__ import annotations

import functools
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from core.safety import looks_like_injection
from tools.catalog import Candidate, CatalogIndex

ROUTES = ("catalog", "metrics", "element_plan", "alert", "knowledge", "help", "refused")


def _rx(*patterns: str) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in patterns]


# Personal data dumps, instruction overrides, illegal help and chit-chat far from banking.
_REFUSE = _rx(
    r"(所有|全部|批量|导出|列出|给我).{0,12}(客户|借款人|用户).{0,8}(身份证|手机|电话|号码|住址|名单|信息)",
    r"(身份证号|手机号(?!转账)|电话号码|家庭住址).{0,6}(是多少|发给我|告诉我|导出|列出)",
    r"(查|告诉我|给我).{0,6}(某个|这个|那个)?(客户|借款人).{0,4}(身份证|手机号|住址)",
    r"(忽略|无视|忘记|忘掉).{0,8}(之前|以上|上面|前面|所有|你的).{0,6}(指令|指示|规则|提示|设定|要求)",
    r"(ignore|disregard).{0,20}(instruction|prompt|rule)s?",
    r"(system\s*prompt|系统提示词|你的提示词|越狱|jailbreak|开发者模式)",
    # (?<!反): 反洗钱 is a compliance topic, not a request to launder money
    r"(?<!反)(洗钱|套现|骗贷|伪造|做假|造假|绕过|规避).{0,10}(怎么|如何|方法|技巧|办法|流水|监管|审批|风控)",
    r"(怎么|如何|帮我).{0,6}(洗钱|套现|骗贷|伪造|造假|逃避监管|绕过风控)",
    r"(天气|写一?首诗|讲个?笑话|星座|彩票|菜谱|做饭|电影推荐|小说|歌词|明天.{0,4}涨|推荐.{0,4}股票|哪只股票|比特币)",
    r"(删除|修改|篡改).{0,8}(审计|日志|数据库|记录)",
    # one person's or many customers' contact details, however the request is phrased
    r"(给我|告诉我|查一?下|发我|发给我).{0,8}(身份证号|手机号(?!转账)|电话号码|家庭住址)",
    r"(客户|借款人).{0,6}(电话|手机号?|身份证号?|住址|名单).{0,6}(发给我|给我|导出|发我|列出)",
    r"洗白|(修复|消除|删除|抹掉).{0,6}(征信|逾期记录|不良记录)",
    r"吃(什么|啥)|推荐.{0,6}(电影|电视剧|歌曲|小说|餐厅)|(写|编).{0,8}(python|java|爬虫|脚本|作文)",
)

_HELP = _rx(
    r"^(你好|您好|hi|hello|在吗|嗨|早上好|上午好|中午好|下午好|晚上好|谢谢|多谢|感谢)(呀|啊|哈|呢|你|您)?[!！。.,，~～?？\s]*$",
    r"(你|谱翼)都?(能|可以|会)(做|干|帮|作|查).{0,4}(什么|啥|哪些)(功能|事|事情|问题|数据|内容)?[?？。!！]*$",
    r"^你?都?(有|会)(哪些|什么|啥)功能[?？。!！]*$|^功能(有哪些|是什么|介绍)[?？。!！]*$|(能|可以)问你(哪些|什么|啥)",
    r"how (to|do i) use|what can you do",
    r"(怎么|如何)(使用|用)(你|谱翼|这个助手|助手)",
    r"^(帮助|help|使用说明|功能介绍|菜单|\?|？)$",
    r"(你是谁|你叫什么|介绍一下你自己|谱翼是什么)",
)

_CUES: dict[str, list[tuple[re.Pattern[str], float]]] = {
    "alert": [
        (re.compile(p), w) for p, w in (
            (r"预警|告警|报警|警报|警示|(?i:(alert|warning)s?)", 3.0),
            # why a product was suspended or put on watch: outweighs the metric it names ("…不良率多少")
            (r"(为什么|为啥|咋|怎么会|怎么就).{0,12}(停牌|被停|被关|关注|暂停|退出评估|叫停|(?i:suspend))"
             r"|(停牌|关注|暂停).{0,6}(原因|为什么|怎么回事)", 6.0),
            (r"(预警|告警|报警).{0,10}(原因|为什么|为啥|怎么回事|咋回事|啥情况)"
             r"|(为什么|为啥|怎么回事|咋回事).{0,6}(预警|告警|报警)", 3.0),
            (r"触发|规则命中|风险信号|风险提示", 2.0),
            (r"误报|处置|确认为|已采取措施", 2.0),
            # a disposition of a numbered alert: "确认 #12", "#12 已采取措施"
            (r"(确认|误报|已处置|处置|已采取措施|已整改|已处理)\s*(预警)?\s*[#＃]\s*\d+"
             r"|[#＃]\s*\d+\s*号?\s*(预警)?\s*(确认|误报|已处置|已采取措施|已整改|已处理)", 4.0),
        )
    ],
    "element_plan": [
        (re.compile(p), w) for p, w in (
            (r"要素方案|产品方案|设计方案|定价方案|方案草稿|草拟|起草"
             r"|(贷|贷款|存款|存单|定存|定期|储蓄|理财|产品)的?(要素)?方案"
             r"|(?i:(draft|product plan|proposal))", 4.0),
            (r"(设计|创设|推出|新设|开发|做)(一款|一个|个|款|新的?)?.{0,20}(产品|贷|存款|存单|定期|定存|储蓄|理财|卡)", 2.5),
            # the object may be a product name the index cut out ("设计一款…汽车贷款"): the verb is enough
            (r"(设计|创设|新设|开发|推出)(一款|一个|一只)", 3.0),
            (r"(弄|搞|出|做)(一款|一个|一只|个(?!人|体))新?的?.{0,20}(产品|贷|存款|存单|定期|定存|储蓄|理财|卡)", 2.5),
            (r"新产品|新的(产品|贷款|存款|定期|存单|理财)|产品创新|产品设计|(?i:a/?b)|沙盘|模拟测算", 2.0),
            (r"(利率|年化).{0,3}(不高于|不低于|不超过|最高|最低|上限|下限)\s*\d", 1.5),
            (r"额度最高|额度不超过|最高额度|期限\d+年|\d+年期", 1.0),
            (r"面向.{1,12}(的|客户|企业主|群体)", 1.0),
        )
    ],
    "metrics": [
        (re.compile(p), w) for p, w in (
            (r"不良率|逾期率|不良余额|逾期余额|净利息|净贡献|利息收入|利息支出|手续费收入|中收|拨备|万户投诉率", 3.0),
            (r"余额|规模|日均|客户数|户数|新增客户|流失客户|发生额|投诉|满意度|运营成本|营收|收入|利润|贡献", 2.0),
            # Other names of the facts (tools.metric_defs aliases); 逾期/不良 alone, unless it is about
            # what happens to an overdue borrower (a knowledge question).
            (r"不良贷款|新客|获客|流失|交易额|交易量|业务量|放款量|投放量|付息|资金成本|(?i:ftp)|佣金收入|营运成本|经营成本"
             r"|运营费用|信用减值|客诉|盈利|不良(?!信息|记录)|逾期(?!.{0,6}(怎么办|罚息|后果|影响|记录|利息|会|了|多久))", 2.0),
            (r"环比|同比|增速|增长率|趋势|走势|变化|排名|排行|前\s*\d+|前[一二三四五六七八九十]+(名|个|款)?|top\s*\d+|占比|份额"
             r"|排序|排个序|排一下|(?i:(yoy|mom))", 2.0),
            # superlatives over products or branches ("满意度最低的产品", "哪个产品最赚钱")
            (r"(最高|最低|最多|最少|最大|最小|最好|最差)的.{0,8}(产品|分行|支行|机构|是哪)|哪(个|些|几个|家).{0,10}最(高|低|多|少|大|小|好|差|赚钱|亏|快|慢)", 2.0),
            # colloquial movements and sales: 掉了多少, 涨得快不快, 卖得咋样, 放了多少款, 多少户
            (r"掉了|涨了|跌了|涨得|掉得|跌得|(下降|下滑|增长|降)了?多少|多了多少|少了多少|卖得|销量|销售额|卖了多少"
             r"|放了?多少|多少户|客户有多少|(?i:(npl|balance|revenue|profit|contribution|aum))", 2.0),
            (r"赚钱|亏钱|挣钱|亏损|盈亏", 4.0),
            (r"按.{0,8}(排|排序|排名|从高到低|从低到高)", 3.0),
            (r"(\d{4}年)?\d{1,2}月(份)?|上月|本月|上个月|季度|今年|本年|年初以来|去年|近\d+个?月|近[一二三四五六七八九十]+个月|最近.{0,3}月", 1.0),
            (r"产品评价|评价一下|评价下|评分卡|记分卡|打分|生命周期|低效|退出候选|该不该退出"
             r"|(哪些|什么).{0,6}(该|应该|可以|需要|要)退出|竞争|格局|此消彼长|内部替代|内耗"
             r"|新客户.{0,6}(从哪|来自)|客户.{0,6}从哪里?来|替代|左手倒右手", 4.5),
            (r"表现|业绩|经营情况|(怎么样|咋样)了?[啊呀呢]?[?？。!！]*$", 1.0),
        )
    ],
    "knowledge": [
        (re.compile(p), w) for p, w in (
            # A title in 《》 names a document: what it says is a question for the documents.
            (r"《[^》]{2,60}》", 3.0),
            # …and so does a document's kind followed by what it says ("…的通知的主要内容", "风险提示说了什么"),
            # which outweighs the product, rate or metric named in the title.
            (r"(通知|公告|通报|函|问答|问题|(?i:faq)|手册|说明书|指引|办法|细则|规程|规定|要求|要点|汇编|提示|纪要|制度"
             r"|文件|文档|报告|材料)(汇总|全文)?(的|里|中|上)?(主要|核心)?(内容|要点|重点|精神|摘要|概要)"
             r"|(通知|公告|通报|问答|(?i:faq)|手册|说明书|指引|办法|细则|规程|提示|纪要|文件|文档|报告)"
             r"(里|中|上)?(说|讲|写|提|规定)了?(什么|啥|哪些)", 6.0),
            (r"可以.{0,10}吗|能不能|能否|是否可以|可不可以|允许|行不行|能.{0,10}(吗|嘛|不)[?？。!！]*$", 2.5),
            (r"如何|怎么|怎样|咋办|咋弄|咋整|咋做|咋处理|咋回答|流程|手续|步骤|材料|需要准备|注意事项|须知"
             r"|资质|需要(什么|哪些|啥)", 2.0),
            (r"(?i:(kyc|aml|suitability|prepayment))", 3.0),
            (r"要求|规定|规则|制度|办法|条例|法规|法律|监管|第.{1,6}条|条款", 2.0),
            (r"合规|双录|录音录像|适当性|反洗钱|尽职调查|三查|消保|消费者权益|个人信息保护|实名", 3.0),
            (r"话术|营销|怎么介绍|怎么推荐|卖点|说明书|手册|常见问题|(?i:faq)", 2.0),
            (r"违约金|罚息|冷静期|赎回|撤销|投诉处理", 1.5),
            (r"商业银行法|民法典|存款保险|征信|担保法|反电信|网络诈骗|人民银行|银保监|金融监管总局", 3.0),
        )
    ],
    "catalog": [
        (re.compile(p), w) for p, w in (
            (r"产品目录|产品编码|产品代码|编码|代码|产品号", 2.0),
            (r"核算科目|科目|穿透|下挂|底层|上层|链路|追溯|组成|构成|原子产品|基础产品|聚类产品|可售产品", 2.5),
            (r"对应|映射|属于哪|归属|是哪个产品|哪个产品", 1.5),
            (r"(有哪些|有那些|有什么|有啥|哪些|几种|几款|几个|多少(个|款|种|只)).{0,6}产品"
             r"|产品.{0,6}(有哪些|有那些|都有啥|有啥|有几款|有几个|有几种|清单|列表|数量|数[?？。!！]*$|多少(个|款|种))", 3.0),
            (r"列出|清单|列表|统计|数一数|一共|总共|分布|(?i:list)", 1.5),
            # a status or category with 产品: "在售存款产品", "对公类产品"
            (r"(在售|停牌|停售|下架|已退出|运营中|存款|贷款|理财|支付|结算|同业|基金|保险|对公|零售|普惠)类?产品", 1.0),
            (r"(?i:(fees?|rates?|terms?))", 2.0),
            (r"有哪些|列一下|都有啥|有啥", 1.0),
            (r"要素|利率|期限|额度|起存|起购|风险等级|还款方式|担保方式|办理渠道|目标客群|准入条件|费用|收费", 2.0),
            (r"状态|上线|下架|生命周期状态|主管部门|归口|别名|简称|是什么产品|介绍一下|是什么", 1.5),
        )
    ],
}

_PRIORITY = ("alert", "element_plan", "metrics", "knowledge", "catalog")
WEAK_SCORE = 2.0  # below this, the cues found say little and homophone typos are worth a look

# --- homophone typos of cue words ---------------------------------------------------------------

_JIEBA_LOCK = threading.Lock()
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,4}")


@functools.lru_cache(maxsize=1)
def _cue_words_by_pinyin() -> dict[str, str]:
    """Toneless pinyin → cue word, for the literal words of the route cues (预警, 余额, 要素方案…).
    A pinyin shared by two cue words is left out: the typo could be either."""
    from core.text import pinyin_key

    found: dict[str, set[str]] = {}
    for cues in _CUES.values():
        for rx, _ in cues:
            for word in _CJK_RUN.findall(rx.pattern):
                found.setdefault(pinyin_key(word), set()).add(word)
    return {key: next(iter(words)) for key, words in found.items() if len(words) == 1}


@functools.lru_cache(maxsize=1)
def _word_counts() -> dict[str, int]:
    """jieba's dictionary counts (about 0.5 s and 25 MB, on the first weak question only)."""
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    with _JIEBA_LOCK:  # jieba's lazy initialisation is not thread-safe
        jieba.initialize()
    return jieba.dt.FREQ  # type: ignore[no-any-return]


def fix_homophones(text: str) -> str:
    """`text` with input-method homophones of cue words corrected (预井 → 预警, 关住 → 关注): a span is
    replaced only when it sounds like exactly one cue word and is not itself a common word."""
    from core.text import pinyin_key

    words, counts = _cue_words_by_pinyin(), _word_counts()
    out, i = text, 0
    while i < len(out):
        for size in (4, 3, 2):
            span = out[i:i + size]
            if len(span) < size or not _CJK_RUN.fullmatch(span):
                continue
            word = words.get(pinyin_key(span))
            if word and word != span and counts.get(span, 0) < COMMON_WORD_FREQ:
                out = out[:i] + word + out[i + size:]
                i += size - 1
                break
        i += 1
    return out


COMMON_WORD_FREQ = 50  # jieba's dictionary count above which a span is a word of its own (关注 5229, 关住 3)

# --- catalogue filters --------------------------------------------------------------------------

_CATEGORY = {
    "deposit": r"存款|储蓄|存单",
    "loan": r"贷款|信贷|授信|贷类",
    "payment": r"支付结算|支付|结算|收单|代发|转账|借记卡",
    "intermediary": r"中间业务|中收|代销|代理|理财|基金|保险|贵金属",
    "market": r"金融市场|同业|债券|票据|拆借|回购",
}
_SEGMENT = {
    "retail": r"零售|个人",
    "corporate": r"对公|公司|企业(?!主)",
    "inclusive": r"普惠|小微",
    "interbank": r"同业",
}
_LEVEL = {
    "sellable": r"可售产品|可售",
    "cluster": r"聚类产品|聚类",
    "base": r"基础产品",
    "atomic": r"原子产品|原子",
}
_STATUS = {
    "designing": r"创设|设计中",
    "admission": r"准入(?!条件)",
    "building": r"建设中|建设",
    "operating": r"运营中|在售|运营|在营",
    "suspended": r"停牌|暂停",
    "retired": r"退出|下架|停售|已退",
}
ELEMENT_CUES = {
    "rate_min": r"利率|年化|定价", "rate_max": r"利率|年化|定价",
    "term_min_months": r"期限", "term_max_months": r"期限",
    "amount_min": r"额度|金额|贷多少|借多少", "amount_max": r"额度|金额|贷多少|借多少|最高",
    "repayment": r"还款方式|怎么还", "collateral": r"担保|抵押|质押|保证",
    "target_customers": r"目标客群|客群|适合谁|面向", "eligibility": r"准入条件|申请条件|条件",
    "channels": r"渠道|在哪办|哪里办", "fee": r"费用|收费|手续费",
    "risk_level": r"风险等级|风险级别|R[1-5]", "early_repayment": r"提前还款|提前支取",
    "min_amount": r"起存|起购|起点",
}


@dataclass
class RouteDecision:
    route: str
    intent: str
    question: str = ""
    products: list[Candidate] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    source_codes: list[tuple[str, str, str]] = field(default_factory=list)
    filters: dict[str, str] = field(default_factory=dict)
    elements: list[str] = field(default_factory=list)
    residual: str = ""
    phrase: str = ""  # what is left once cue and filter words are removed: a product reference?
    loose: bool = False  # products came from resolving `phrase`, not from an exact name or code
    unknown_codes: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route, "intent": self.intent,
            "products": [p.as_dict() for p in self.products], "subjects": self.subjects,
            "source_codes": [list(s) for s in self.source_codes], "filters": self.filters,
            "elements": self.elements, "phrase": self.phrase, "scores": self.scores,
        }


def _first_match(table: dict[str, str], text: str) -> str | None:
    for key, pattern in table.items():
        if re.search(pattern, text):
            return key
    return None


def score_routes(text: str) -> dict[str, float]:
    return {
        route: sum(w for rx, w in cues if rx.search(text)) for route, cues in _CUES.items()
    }


def classify(question: str, index: CatalogIndex | None = None) -> RouteDecision:
    """Route a question and link what it names; the index is optional only for pure-text tests."""
    text = question.strip()
    if any(rx.search(text) for rx in _REFUSE) or looks_like_injection(text):
        return RouteDecision("refused", "refused", text)
    if any(rx.search(text) for rx in _HELP):
        return RouteDecision("help", "help", text)

    mentions = index.mentions(text) if index else None
    products = mentions.products if mentions else []
    subjects = mentions.subjects if mentions else []
    sources = mentions.source_codes if mentions else []
    # Score the text with product names cut out, so a name like 薪金贷 never reads as a cue.
    scored_text = mentions.residual if mentions else text
    scores = score_routes(scored_text)
    if products or subjects or sources:
        scores["catalog"] += 0.5  # a named product with no other cue is a catalogue question
    if sources or subjects:
        scores["catalog"] += 2.0

    best = max(_PRIORITY, key=lambda r: (scores[r], -_PRIORITY.index(r)))
    if scores[best] < WEAK_SCORE:
        # Little to go on: perhaps a cue word was typed as a homophone ("最近有哪些预井"). Re-score with
        # such words corrected, and keep that only if it says more.
        fixed = fix_homophones(scored_text)
        if fixed != scored_text:
            rescored = score_routes(fixed)
            rescored["catalog"] += scores["catalog"] - score_routes(scored_text)["catalog"]  # the name bonuses
            better = max(_PRIORITY, key=lambda r: (rescored[r], -_PRIORITY.index(r)))
            if rescored[better] > scores[best]:
                scored_text, scores, best = fixed, rescored, better
    decision = RouteDecision(
        best, best, text, products, subjects, sources, residual=scored_text,
        unknown_codes=mentions.unknown_codes if mentions else [],
        scores={k: v for k, v in scores.items() if v},
    )
    if scores[best] <= 0:
        # No cue at all: a bare product name ("快贷") is a catalogue question; anything else goes
        # to the documents, which can say "not found".
        _resolve_phrase(decision, index)
        decision.route = "catalog" if decision.products else "knowledge"
        decision.intent = decision.route
    if decision.route == "catalog":
        _resolve_phrase(decision, index)
        _catalog_intent(decision, scored_text)
    elif decision.route == "metrics":
        decision.intent = metrics_intent(scored_text)
    elif decision.route == "alert":
        decision.intent = alert_intent(scored_text)
    return decision


_EVALUATION_RE = re.compile(r"产品评价|评价|评分卡|记分卡|评分|打分|生命周期|低效|退出候选|该不该退出|哪些.{0,4}退出|竞争|格局|此消彼长|同类.{0,4}比较")
_SUBSTITUTION_RE = re.compile(
    r"内部替代|内耗|替代|蚕食|左手倒右手|新客户.{0,8}(从哪|来自|哪里来|哪儿来)|新客.{0,6}(从哪|来自|哪里来)"
    r"|客户.{0,6}(从哪里?来|哪里来|哪儿来)|(新增资金|资金|增量).{0,6}(从哪|来自哪|哪里来)"
)


def metrics_intent(text: str) -> str:
    """metrics route: `substitution` (where a product's new customers came from), `evaluation`
    (scorecard, lifecycle, exit candidates, category view) or `metric` (a figure, ranking or trend)."""
    if _SUBSTITUTION_RE.search(text):
        return "substitution"
    if _EVALUATION_RE.search(text):
        return "evaluation"
    return "metric"


_DISPOSE_WORD = r"(?:确认|误报|已处置|已采取措施|已整改|已处理|处置)"
# The disposition word next to the alert's number: "确认 #12", "误报 预警#12", "#12 已采取措施".
_DISPOSE_RE = re.compile(
    rf"{_DISPOSE_WORD}\s*(?:预警|告警)?\s*[#＃]\s*\d+|[#＃]\s*\d+\s*号?\s*(?:预警|告警)?\s*[,，:：]?\s*{_DISPOSE_WORD}"
)
_ALERT_ID_RE = re.compile(
    r"(?:预警|告警|alert)?\s*[#＃]\s*(\d+)|(?:预警|告警)\s*(?:编号)?\s*(\d+)(?!\d)(?!\s*[月年日号条个%])", re.IGNORECASE
)


def alert_id_in(text: str) -> int | None:
    """The alert number a message names ("预警 #12", "#12", "预警12"), or None."""
    m = _ALERT_ID_RE.search(text)
    return int(m.group(1) or m.group(2)) if m else None


def alert_intent(text: str) -> str:
    """alert route: `dispose` (a disposition of a numbered alert), `list` (which alerts there are)
    or `explain` (why a product's alert fired)."""
    if _DISPOSE_RE.search(text) and not re.search(r"为什么|怎么回事|是什么原因", text):
        return "dispose"
    if re.search(r"有哪些|哪些产品|列出|清单|列表|多少(个|条)|最新.{0,4}预警|本月.{0,4}预警", text) and not re.search(r"为什么|原因|怎么回事", text):
        return "list"
    return "explain"


def _catalog_intent(d: RouteDecision, text: str) -> None:
    filters = {
        "category": _first_match(_CATEGORY, text),
        "segment": _first_match(_SEGMENT, text),
        "level": _first_match(_LEVEL, text),
        "status": _first_match(_STATUS, text),
    }
    d.filters = {k: v for k, v in filters.items() if v}
    d.elements = [k for k, p in ELEMENT_CUES.items() if re.search(p, text)]
    counting = re.search(r"多少|几个|几款|几种|数量|统计|一共|总共|分布", text)
    listing = re.search(r"有哪些|哪些|有什么|列出|清单|列表|列一下", text)
    if d.source_codes or (d.unknown_codes and re.search(r"系统|源码|代码|编码", text)):
        d.intent = "map_code"
    elif d.subjects or (re.search(r"科目", text) and re.search(r"哪些产品|哪些|挂|用到|对应", text) and not d.products):
        d.intent = "trace_up"
    elif d.products and re.search(r"穿透|下挂|底层|核算科目|科目|组成|构成|链路|追溯|原子|基础产品|聚类|上层|上级", text):
        d.intent = "trace_up" if re.search(r"上层|上级|哪些可售|被哪些", text) else "trace_down"
    elif d.products and d.elements:
        d.intent = "elements"
    elif d.products:
        d.intent = "product"
    elif d.phrase and not (counting or listing or d.filters):
        d.intent = "find"  # named something we cannot link: say so, with suggestions
    elif counting and not listing:
        d.intent = "count"
    else:
        d.intent = "list"


# Words that carry the question's intent, not the product's name.
_STOP = re.compile(
    "|".join(
        [
            r"请问|请|帮我|帮忙|麻烦|给我|我想|查询|查一下|查下|看看|看一下|说说|介绍一下|介绍|一下|告诉我|了解",
            r"是什么|是多少|多少|有哪些|哪些|有什么|什么|几个|几款|几种|怎么样|如何|怎样|吗|呢|吧|啊|呀|的",
            r"产品目录|产品编码|产品代码|产品|要素|编码|代码|详情|信息|情况|基本|具体",
            r"我行|本行|咱们|我们|目前|现在|当前|所有|全部|一共|总共|分别|都",
            r"穿透|下挂|底层|上层|上级|核算科目|科目|组成|构成|链路|追溯|对应|映射|属于|归属|哪个",
            r"列出|清单|列表|统计|数量|分布|状态|上线|下架|主管部门|归口|别名|简称",
            r"贷款类|存款类|贷款|存款|储蓄|支付结算|中间业务|中收|金融市场|零售|对公|普惠|同业",
            r"可售|聚类|基础|原子|创设|准入|建设|运营|在售|停牌|暂停|退出|停售",
        ]
        + list(ELEMENT_CUES.values())
    )
)
_PUNCT = re.compile(r"[\s,，。.!！?？、;；:：()（）\[\]【】“”\"'‘’/|]+")


def leftover_phrase(text: str) -> str:
    """The longest run left after removing intent words: what may name a product loosely."""
    chunks = [c for c in _PUNCT.split(_STOP.sub(" ", text)) if len(c) >= 2]
    return max(chunks, key=len) if chunks else ""


def _resolve_phrase(d: RouteDecision, index: CatalogIndex | None) -> None:
    """Link a loosely named product (typo, partial name) when nothing was named exactly."""
    if d.products or d.subjects or d.source_codes or index is None:
        return
    d.phrase = leftover_phrase(d.residual)
    if d.phrase:
        d.products = index.resolve(d.phrase)
        d.loose = bool(d.products)
