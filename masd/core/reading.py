"""Reading replies as staff type them: normalisation and the answer reader. Pure functions, no I/O.

:func:`normalise` is what every reply and every configured word is compared as — the core's keyword
rules (TD, 退订) and the modules' answers alike: control characters and lone surrogates dropped, full
width to ASCII (NFKC), Traditional to Simplified Chinese (OpenCC), case folded, emoji and other
symbols turned into spaces, spaces collapsed. :func:`normalised` also keeps the reply as written, for
the words a reader hands back (a leave's reason) in the sender's case and script.

A :class:`Reader` reads a reply against a vocabulary of answers (meaning → words) and says what it
means and whether it is *sure*. It is built to be wrong as rarely as possible, not to be clever: a
reading is sure only when every part of the reply is understood and nothing in it casts doubt —
a question (？ 吗 几点 …), a negation (不 没 无法 …) that does not form a refusal, a hedge or a
condition (可能 如果 …), someone else (替 他 和 …), another time (下次), a failure (失败), two answers
that disagree. Politeness, acknowledgements and a sender's name around the answer are understood;
digits that count something (1点, 2楼, 3个人) are not answers. Anything else is unsure, and the caller
asks back. The words of these classes are the reader's own; only the answers are configured.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import re
import unicodedata
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar, cast

import opencc

__all__ = ["LONGEST", "Normalised", "Reader", "Reading", "clean", "normalise", "normalised", "vocabulary"]

M = TypeVar("M", bound=Hashable)


# ----- normalisation ------------------------------------------------------------------------------


@functools.cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def clean(text: str) -> str:
    """``text`` without what cannot be stored or shown: lone surrogates (invalid UTF-16 from a handset)
    and control characters other than tab and line breaks. Nothing else changes."""
    return "".join(ch for ch in text if not (unicodedata.category(ch) in ("Cs", "Cc") and ch not in "\t\n\r"))


@dataclasses.dataclass(frozen=True, slots=True)
class Normalised:
    """A reply normalised (``text``) and the same reply as written (``written``: width, symbols and
    spaces normalised, but case kept and, where OpenCC kept the length, the script too). ``index``
    maps each position of ``text`` to its position in ``written``."""

    text: str
    written: str
    index: tuple[int, ...]

    def as_written(self, start: int, end: int) -> str:
        """``text[start:end]`` as the sender wrote it."""
        if start >= end or start >= len(self.index):
            return ""
        return self.written[self.index[start] : self.index[end - 1] + 1]


def _visible(ch: str) -> str:
    """One character after NFKC: kept, a space (whitespace, emoji and other symbols), or dropped
    (format characters such as zero-width joiners, variation selectors, enclosing keycaps)."""
    cat = unicodedata.category(ch)
    if ch.isspace() or cat in ("Zs", "Zl", "Zp"):
        return " "
    if cat in ("Cc", "Cf", "Cs", "Me") or 0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF:
        return ""
    if not ch.isascii() and cat in ("So", "Sk", "Sm", "Co", "Cn"):
        return " "
    return ch


# Typographic quotes typed by phones' keyboards, read as the ASCII ones (can’t is can't).
_QUOTES = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'}


def normalised(text: str) -> Normalised:
    """The reply normalised, remembering how it was written. Never raises."""
    t = unicodedata.normalize("NFKC", clean(text))
    written = " ".join("".join(_visible(ch) for ch in t).split())
    simplified = _t2s().convert(written) if written else ""
    if len(simplified) != len(written):  # OpenCC changed the length: the positions are the simplified ones
        written = simplified
    folded: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(simplified):
        f = _QUOTES.get(ch) or ch.casefold()
        folded.append(f)
        index.extend([i] * len(f))
    return Normalised("".join(folded), written, tuple(index))


def normalise(text: str) -> str:
    """What a reply or a configured word is compared as: ``ＴＤ``, ``td`` and ``TD`` alike, ``退訂`` as
    ``退订``, ``參加👍`` as ``参加``. Never raises."""
    return normalised(text).text


def vocabulary(words: Mapping[M, Iterable[str]]) -> dict[str, M]:
    """Each configured word normalised, with its meaning. Refuses, naming the word, one that two
    meanings share once normalised (``參加`` for one and ``参加`` for another) and one that is nothing
    once normalised (an emoji alone)."""
    seen: dict[str, tuple[M, str]] = {}
    for meaning, ws in words.items():
        for w in ws:
            n = normalise(w)
            if not n:
                raise ValueError(f"the reply word {w!r} ({meaning}) reads as nothing once normalised")
            if n in seen and seen[n][0] != meaning:
                other, as_given = seen[n]
                raise ValueError(
                    f"the reply word {w!r} is given for both {other} and {meaning}"
                    + (f" (as {as_given!r})" if as_given != w else "")
                    + f"; both read as {n!r}"
                )
            seen.setdefault(n, (meaning, w))
    return {n: m for n, (m, _) in seen.items()}


# ----- the reader's own words ---------------------------------------------------------------------
# Simplified and lower case, normalised again when a reader is built; "_" joins the words of an
# English phrase. Longest match decides between them: 不过 is a "but", not a 不; 与会 is an answer, not
# a 与; 不好意思 is politeness. A word in a later list wins over the same word in an earlier one.

# Politeness, acknowledgement, the sender: harmless around any answer, and left out of a reason.
_POLITE = """
我 本人 我们 咱们 您 你 你好 您好 大家好 各位好 老师好 领导好 各位领导 谢谢领导 收到领导 好的领导
报告领导 好 好的 好滴 好嘞 好咧 好吧 行 行的 嗯 嗯嗯 哦 噢 喔 哈哈 呵呵 嘿嘿 收到 收到了 已收到 已阅
收悉 知悉 知道 知道了 明白 明白了 了解 清楚 没问题 没有问题 放心 不见不散 没事 没关系 谢谢 谢谢你 谢谢您
多谢 感谢 非常感谢 谢了 辛苦 辛苦了 麻烦了 不客气 唔该 多谢晒 冇问题 谢谢邀请 感谢邀请 谢谢提醒 谢谢通知
感谢通知 不好意思 抱歉 很抱歉 非常抱歉 对不起 实在抱歉 回复 答复 报告 选 选择 回 ok okay okey noted
thanks thank_you thx ty hi hello dear sir madam sorry please i i'm i'll i_am me we we'll no_problem np
sure of_course got_it
"""
# Harmless around an answer, but part of a reason: the meeting, emphasis, "already", "because".
_FILLER = """
会议 会 开会 此次会议 本次会议 这次会议 这个会 该会议 会议通知 通知 培训 活动 学习 的会 这次 此次 本次
真的 确实 实在 非常 特此 已 已经 也 都 还 就 同时 同意 成功 在 正在 如期 正常 一下 因 因为 由于 所以
确定 完成 完毕 更正 改为 改成 修改为
"""
# Time words: harmless, but a digit after them is a time (下午3点), not an answer.
_TIME = """
今天 明天 后天 今日 明日 今晚 明早 明晚 上午 下午 中午 晚上 早上 周末 当天 现在 马上 稍后 届时 到时
到时候 today tomorrow
"""
# May stand beside a weak answer (是的。确认了): nothing else may.
_PARTICLE = "了 的 啦 呀 啊 哒 滴 咯 喽 嘞 哟 呐 哈"
# Answers only alone: 是 (是张三 is a name), 确认 (确认收到 acknowledges the notice, it does not answer).
_WEAK = "是 是的 确认 确定 对 对的"
# Adverbs: harmless beside an answer, and they make a movement verb one (会来, 准时到, 一定去).
_ADVERB = """
会 能 能够 可以 要 将 准时 按时 准点 一定 肯定 必定 务必 再 方便 及时 按期 will can could shall
definitely
"""
# The adverbs that may stand between a negation and what it negates (不能来, 不想参加, 无法到场);
# others there (没法按时参加: comes late) leave the negation unattached, and the reply unsure.
_ADVERB_NEGATED = "会 能 能够 可以 要 将 再 想 打算 准备 计划 愿意 愿 方便"
_NEGATED = frozenset(_ADVERB_NEGATED.split())
_VERB = "去 来 到 过去 过来 赶到 赶来 赶过去 前往 参与 come go join make_it be_there"
# Negations: before an answer of the positive meaning, or a verb, they make a refusal.
_NEG = """
不 不能 不能够 无法 没法 没办法 没有办法 不会 不可以 未能 不便 不方便 难以 不克 无暇 不再 来不及 赶不上
赶不及 没时间 没空 不用 不必 不需要 无需 没必要 别 不要 不想 不准备 不打算 不愿意 不是 唔 唔能 唔可以 冇
冇办法 not can't cant cannot won't wont don't dont unable never couldn't wouldn't isn't aren't
not_able_to unable_to will_not can_not do_not
"""
# Negations of the past or of "yet": 没参加 (did not), 未签到 (not yet). Never a refusal.
_NEG_PAST = "没 没有 未 还没 还没有 尚未 从未 从没"
_NEG_SUFFIX = "不了 不成"  # 参加不了, 去不成
# What a refusal or a leave gives as its reason (出差不参加): harmless there, doubtful beside a "yes".
_REASON = """
有事 有点事 出差 生病 病了 身体不适 不舒服 家里有事 在外地 外出 在外 值班 时间冲突 有课 住院 发烧 感冒
在开会
"""
_QUESTION = """
吗 呢 么 嘛 是否 是不是 能不能 可不可以 可否 能否 要不要 需不需要 用不用 有没有 对不对 行不行 好不好
会不会 去不去 来不来 参不参加 到不到 哪 几 什么 甚么 啥 怎么 怎样 如何 为什么 为何 为啥 多少 多久 谁
何时 何地 何处 何必 请问 问一下 问下 想问 咨询 确认一下 咩 乜 边度 几时 what when where which why how
who whom whose
"""
_HEDGE = """
可能 也许 或许 大概 大约 估计 应该 尽量 争取 力争 不一定 说不定 说不好 难说 暂定 待定 未定 再定 再说
再看 看看 看情况 视情况 不确定 不知道 不清楚 恐怕 原则上 基本上 差不多 希望 考虑 如果 假如 要是 若 若是
的话 万一 除非 只要 只有 试试 尽可能 或 或者 还是 要么 吧 想 打算 准备 计划 也行 也可以 都行 都可以
无所谓 随便 均可 商量 算了 maybe perhaps probably possibly might may likely try trying hope if unless
depends tbd tentative tentatively unsure not_sure
"""
_DELEGATE = """
派 代 替 代替 代表 委托 让 叫 帮 帮忙 请 托 由 给 为 换人 顶替 另派 安排 派人 找人 instead on_behalf
send sending representative deputy substitute
"""
_OTHERS = """
他 她 他们 她们 它 别人 其他人 其他同志 同事 同志 你们 和 与 跟 同 及 以及 还有 带 一起 一同 陪同 随同
全体 大家 全部 俩 单位 he she they him her them colleague colleagues boss
"""
# Titles: a greeting or a signature in a clause of their own (领导，我参加), doubtful beside an
# answer (领导参加: the sender's superior, not the sender).
_TITLE = "领导 主任 局长 科长 处长 书记 主席 经理 老板 秘书 老师 部长 院长 所长 校长 站长 队长 组长"
_ANOTHER = "别的 其他 其它 另一个 另外一个 另一 其余 another other"
_TIMESHIFT = """
下次 下回 下一次 改天 改日 以后 上次 上回 上一次 之前 以前 曾 曾经 昨天 前天 去年 明年 回来 结束 销假 刚
刚才 刚刚 next_time last_time yesterday
"""
_TROUBLE = """
失败 不成功 没成功 未成功 出错 错误 报错 有问题 异常 不行 没反应 不上 进不去 不批 没批 未批 不准 驳回
不同意 没通过 未通过 无效 过期 不对 错了 搞错 发错 取消 撤销 撤回 作废 fail failed failure error wrong
problem issue cancel cancelled
"""
# Nouns that begin with an answer word but answer nothing: 请假条, 签到码, 参加人员.
_TOPIC = """
请假条 请假单 请假手续 请假流程 请假表 请假制度 签到表 签到处 签到码 签到时间 签到地点 签到二维码 参加者
参会人员 参加人员 参会者 参会人 参加人 出席者 出席人员 请假人 签到人 关于
"""
_CONJ = "但 但是 不过 可是 只是 就是 另外 并且 而且 然后 but however though although and"
# What a digit counts when one of these follows it: 1点, 2楼, 3个人, 1号会议室, 3 pm, 2nd floor.
_UNITS = """
点 楼 层 号 个 人 位 名 天 日 月 年 周 次 份 分 时 小时 室 栋 幢 排 座 元 块 岁 半 期 届 组 队 项 条 张
本 页 部 辆 台 间 处 门 路 米 公里 千 万 百 十 倍 级 区 场 节 季 刻 秒 件 家 户 口 套 批 遍 趟 步 % pm
am h min st nd rd th f o'clock people persons person floor x
"""
# Common surnames: a run of 2–3 unknown characters beginning with one (and with none of
# _NOT_IN_NAMES) is the sender's name, as people sign a reply (张三参加, 参加。李明).
_SURNAMES = """
王 李 张 刘 陈 杨 黄 赵 吴 周 徐 孙 马 朱 胡 郭 何 高 林 罗 郑 梁 谢 宋 唐 许 韩 冯 邓 曹 彭 曾 肖 田 董
袁 潘 于 蒋 蔡 余 杜 叶 程 苏 魏 吕 丁 任 沈 姚 卢 姜 崔 钟 谭 陆 汪 范 金 石 廖 贾 夏 韦 付 方 白 邹 孟
熊 秦 邱 江 尹 薛 闫 段 雷 侯 龙 史 陶 黎 贺 顾 毛 郝 龚 邵 万 钱 严 覃 武 戴 莫 孔 向 汤 常 温 康 施 文
牛 樊 葛 邢 安 齐 易 乔 伍 庞 颜 倪 庄 聂 章 鲁 岳 翟 殷 詹 申 欧 耿 关 兰 焦 俞 左 柳 甘 祝 包 宁 尚 符
舒 阮 柯 纪 梅 童 凌 毕 单 季 裴 霍 涂 成 苗 谷 盛 曲 翁 冉 骆 蓝 路 游 辛 靳 管 柴 蒙 鲍 华 喻 祁 蒲 房
滕 屈 饶 解 牟 艾 尤 阳 时 穆 农 司 卓 古 吉 缪 简 车 项 连 芦 麦 褚 娄 窦 戚 岑 景 党 宫 费 卜 冷 晏 席
卫 米 柏 宗 瞿 桂 全 佟 应 臧 闵 苟 邬 边 卞 姬 师 仇 栾 隋 商 刁 沙 荣 巫 寇 桑 郎 甄 丛 仲 虞 敖 巩 佘
池 查 麻 苑 迟 邝 封 钮 官 扈 上官 欧阳 司马 诸葛
"""
# Characters a name does not contain here: those that would change what the reply says.
_NOT_IN_NAMES = frozenset(
    "不没未无非别莫勿难想要愿派代替让请叫帮托去来到回走吗呢么吧哪几谁什怎和与跟同及次年月日号点时人排"
)

_ROLES: dict[str, str] = {}
for _role, _block in (
    ("polite", _POLITE),
    ("filler", _FILLER),
    ("time", _TIME),
    ("particle", _PARTICLE),
    ("adverb", _ADVERB),
    ("verb", _VERB),
    ("reason", _REASON),
    ("neg", _NEG),
    ("neg_past", _NEG_PAST),
    ("neg_suffix", _NEG_SUFFIX),
    ("hedge", _HEDGE),
    ("delegate", _DELEGATE),
    ("others", _OTHERS),
    ("title", _TITLE),
    ("another", _ANOTHER),
    ("timeshift", _TIMESHIFT),
    ("trouble", _TROUBLE),
    ("conj", _CONJ),
    ("topic", _TOPIC),
    ("question", _QUESTION),
):
    for _w in _block.split():
        _ROLES[_w.replace("_", " ")] = _role

# Roles that make any reading unsure, wherever they stand.
_FLAGS = frozenset({"question", "hedge", "delegate", "others", "another", "timeshift", "trouble"})
_NEGATIONS = frozenset({"neg", "neg_past", "neg_suffix"})
_FILLERISH = frozenset({"polite", "filler", "time", "particle", "adverb"})
_PEOPLE = ("人", "个人", "位", "名", "people", "persons", "person")
_UNIT_WORDS = tuple(sorted(_UNITS.split(), key=len, reverse=True))
_SURNAME_SET = frozenset(_SURNAMES.split())
_WEAK_SET = frozenset(_WEAK.split())
# Answers a negation cannot turn into a refusal: 不1, not yes — unreadable, not "no".
_INTERJECTIONS = frozenset({"yes", "y", "yep", "yeah", "ok", "okay"})
_CODE = re.compile(r"#\s*(\d{1,9})")
_NOT_APPLICABLE = re.compile(r"\bn\s*/\s*a\b")  # N/A: not "no" and a note
_A_NOT_A = re.compile(r"([\u3400-\u9fff]{1,2})[不没]\1")  # 去不去, 参加不参加, 有没有: questions
_EDGES = " ,.;:!-_/|+~'\"、，。：；！…()（）[]【】<>《》"


# A reply longer than this is no answer, whatever it holds: the longest leave reasons staff type are
# a sentence or two (four SMS segments are 268 Chinese characters).
LONGEST = 300

# ----- atoms and tokens ---------------------------------------------------------------------------

# After normalisation: digits (3.5 and 14:30 are one number), words of alphabetic scripts, question
# marks, CJK characters one by one, spaces, and any other character as punctuation.
_CJK = "\u2e80-\u2fff\u3040-\ufaff\ufe30-\ufe4f\U00020000-\U0003ffff"
_ATOM = re.compile(
    r"(?P<space> )"
    rf"|(?P<num>[0-9]+(?:[.:/\-][0-9]+)*)"
    rf"|(?P<word>[^\W\d_{_CJK}]+(?:'[^\W\d_{_CJK}]+)*)"
    r"|(?P<question>\?)"
    rf"|(?P<cjk>[{_CJK}])"
    r"|(?P<punct>.)",
    re.S,
)


@dataclasses.dataclass(frozen=True, slots=True)
class _Atom:
    kind: str  # space | num | word | question | cjk | punct
    text: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Token:
    role: str  # answer | weak | number | unknown | space | sep | one of the roles above
    text: str
    start: int
    end: int
    meaning: Hashable | None = None
    digits: bool = False  # an answer written in digits (1, 2, 3, a check-in code)


def _atoms(text: str) -> list[_Atom]:
    return [_Atom(m.lastgroup or "punct", m.group(), m.start(), m.end()) for m in _ATOM.finditer(text)]


def _key(atoms: Sequence[_Atom]) -> tuple[str, ...] | None:
    """The lexicon key of a run of atoms, or None if the run cannot be one word: a space only between
    two English words, no punctuation."""
    parts: list[str] = []
    for i, a in enumerate(atoms):
        if a.kind == "space":
            inner = 0 < i < len(atoms) - 1
            if not (inner and atoms[i - 1].kind == "word" and atoms[i + 1].kind == "word"):
                return None
        elif a.kind in ("punct", "question"):
            return None
        else:
            parts.append(a.text)
    return tuple(parts)


def _lexicon_key(word: str) -> tuple[str, ...] | None:
    return _key(_atoms(word))


def _solid(tokens: Iterable[_Token]) -> list[_Token]:
    return [k for k in tokens if k.role not in ("space", "sep")]


@dataclasses.dataclass(frozen=True, slots=True)
class Reading(Generic[M]):
    """What a reply means. ``meaning``: the best guess, None when the reply gives none; ``sure``:
    whether it may be recorded as the sender's answer; ``text``: for a sure reading, what the sender
    added (a note, or the reason of a free meaning such as a leave), otherwise the whole reply as kept
    (see :func:`clean`); ``code``: a ``#42`` found anywhere in the reply."""

    meaning: M | None
    sure: bool
    text: str = ""
    code: int | None = None


class Reader(Generic[M]):
    """Reads replies against ``words``: meaning → the words that give it (digits such as ``1`` are
    words too).

    ``yes`` and ``no`` are the meanings a negation turns one into the other: a negation before a word of
    ``yes`` or before a movement verb reads as ``no`` (不能参加, 去不了, can't come), never as ``yes``.
    ``free``: meanings whose other words are a free text, their reason (请假：孩子生病).
    ``absorbs``: a meaning that wins over the others it implies when both are given (a leave over a
    refusal: 请假，来不了). Two meanings otherwise are a contradiction, and unsure.
    """

    def __init__(
        self,
        words: Mapping[M, Iterable[str]],
        *,
        yes: M,
        no: M,
        free: Collection[M] = (),
        absorbs: Mapping[M, Collection[M]] | None = None,
    ) -> None:
        self.yes, self.no = yes, no
        self.free = frozenset(free)
        self.absorbs = {k: frozenset(v) for k, v in (absorbs or {}).items()}
        self.vocabulary: dict[str, M] = vocabulary(words)
        lexicon: dict[tuple[str, ...], tuple[str, M | None]] = {}
        for w, role in _ROLES.items():
            key = _lexicon_key(normalise(w))
            if key:
                lexicon[key] = (role, None)
        for n, meaning in self.vocabulary.items():
            key = _lexicon_key(n)
            if key:  # the configured words win over the reader's own
                lexicon[key] = ("weak" if n in _WEAK_SET and meaning == yes else "answer", meaning)
        self._lexicon = lexicon
        self._longest = max((len(k) for k in lexicon), default=1)

    def read(self, text: str, *, codes: Mapping[str, M] | None = None) -> Reading[M]:
        """What ``text`` means. ``codes``: words that give a meaning in this reply only (a meeting's
        check-in code), as the whole reply or as a number in it; a number beside such a meaning that
        is not one of its codes makes the reading unsure. A reply longer than :data:`LONGEST` or one
        that lost characters (lone surrogates, control characters, U+FFFD) is unsure. Never raises."""
        kept = clean(text).strip()
        if len(kept) > LONGEST or clean(text) != text or "\ufffd" in text:
            # Longer than any answer, or characters lost on the way (a lone surrogate, a control
            # character, U+FFFD where a decoder met bytes it could not read): what is left may not be
            # what was sent — 参加\ufffd may have been 参加吗.
            return Reading(None, False, kept)
        try:
            return self._read(kept, codes or {})
        except Exception:  # a reader's bug must cost an ask-back, never a reply
            return Reading(None, False, kept)

    # --- the steps ----------------------------------------------------------------------------------

    def _read(self, kept: str, codes: Mapping[str, M]) -> Reading[M]:
        p = normalised(kept)
        t = p.text
        code: int | None = None
        m = _CODE.search(t)
        if m:
            code = int(m.group(1))
            t = t[: m.start()] + " " * (m.end() - m.start()) + t[m.end() :]
        unsure: Reading[M] = Reading(None, False, kept, code)
        coded = {n: mm for c, mm in codes.items() if (n := normalise(c))}
        bare = t.strip(_EDGES)
        if bare in coded:
            return Reading(coded[bare], True, "", code)
        if not bare:
            return unsure
        tokens, invalid = self._units(self._tokens(t, coded))
        found = {cast(M, k.meaning) for k in tokens if k.role in ("answer", "weak")}
        guess = dataclasses.replace(unsure, meaning=found.pop() if len(found) == 1 and not invalid else None)
        if invalid or any(k.role == "question" for k in tokens) or _A_NOT_A.search(t) or _asks(tokens):
            return guess
        if _NOT_APPLICABLE.search(t):
            return guess
        meaning = self._meaning(tokens)
        if meaning is None:
            return guess
        guess = dataclasses.replace(unsure, meaning=meaning)
        solid = _solid(tokens)
        if any(k.role in _FLAGS for k in solid):
            return guess
        if meaning != self.no and meaning not in self.free and any(k.role in _NEGATIONS for k in solid):
            return guess
        if _progressive(solid) or _conditional(tokens):
            return guess  # 我在参加培训: busy elsewhere; 能参加就参加: only if
        if meaning == self.no and any(k.role == "verb" for k in solid):
            return guess  # no, I'll come
        if meaning in coded.values() and any(k.role == "number" for k in solid):
            return guess  # 签到 1234 when the code is 5678: another meeting's, or a mistake
        if not any(k.role == "answer" for k in solid):  # weak alone: 是, 确认, 是的。
            ok = all(k.role in ("weak", "particle") for k in solid)
            return Reading(meaning, True, "", code) if ok else guess
        if meaning in self.free:
            if any(_answer_beside(c, {"title"}) for c in _clauses(tokens)):
                return guess  # 领导请假: the sender's superior, not the sender
            if any(_answer_beside(c, _NEGATIONS) for c in _clauses(tokens)):
                return guess  # 不好请假: hard to get leave, so maybe there after all
            return Reading(
                meaning, True, self._remainder(p, tokens, _leading_name(tokens), reason=True), code
            )
        names = self._understood(tokens, meaning)
        if names is None:
            return guess
        return Reading(meaning, True, self._remainder(p, tokens, names), code)

    def _tokens(self, t: str, coded: Mapping[str, M]) -> list[_Token]:
        """Longest match over the atoms of ``t``. Unknown CJK characters next to each other are one
        token; a digit keeps its meaning only where a digit can be an answer."""
        atoms = _atoms(t)
        out: list[_Token] = []
        i = 0
        while i < len(atoms):
            a = atoms[i]
            if a.kind in ("space", "question", "punct"):
                role = {"space": "space", "question": "question", "punct": "sep"}[a.kind]
                out.append(_Token(role, a.text, a.start, a.end))
                i += 1
                continue
            n, hit = 0, None
            for n in range(min(self._longest * 2, len(atoms) - i), 0, -1):
                key = _key(atoms[i : i + n])
                hit = self._lexicon.get(key) if key else None
                if hit is not None:
                    break
            if a.kind == "num" and (hit is None or n == 1):
                meaning = coded.get(a.text) or (hit[1] if hit else None)
                out.append(
                    _Token(
                        "answer" if meaning is not None else "number", a.text, a.start, a.end, meaning, True
                    )
                )
                i += 1
            elif hit is None:
                prev = out[-1] if out else None
                joins = prev is not None and prev.role == "unknown" and prev.end == a.start
                if joins and prev is not None and a.kind == "cjk" and _is_cjk(prev.text):
                    out[-1] = dataclasses.replace(prev, text=prev.text + a.text, end=a.end)
                    i += 1
                    continue
                out.append(_Token("unknown", a.text, a.start, a.end))
                i += 1
            else:
                last = atoms[i + n - 1]
                out.append(_Token(hit[0], t[a.start : last.end], a.start, last.end, hit[1]))
                i += n
        return self._digits(t, out)

    @staticmethod
    def _digits(t: str, tokens: list[_Token]) -> list[_Token]:
        """A digit is an answer only after nothing but politeness, a name, a reason or another answer —
        not after a time word (下午3) or a topic (参加人数：3) — and not when it counts something (3个人,
        2 楼, 1点, 3pm). A number of people (3人, 2 people) speaks for others."""
        out = list(tokens)
        for j, tk in enumerate(out):
            if not tk.digits:
                continue
            after = t[tk.end :].lstrip(" ")
            if any(after.startswith(u) for u in _PEOPLE):
                out[j] = dataclasses.replace(tk, role="others", meaning=None)
                continue
            if tk.role != "answer":
                continue
            before = [k for k in reversed(out[:j]) if k.role != "space"]
            placed = all(
                k.role in ("polite", "filler", "particle", "answer", "weak", "sep", "conj", "reason")
                or (k.role == "unknown" and _is_name(k.text))
                for k in before
            ) and not (before and before[0].role == "time")
            if not placed or _counts(after):
                out[j] = dataclasses.replace(tk, role="number", meaning=None)
        return out

    def _units(self, tokens: list[_Token]) -> tuple[list[_Token], bool]:
        """Joins negations, adverbs and verbs to what they belong to: 不能参加, 不参加了, 参加不了, 去不了
        and can't come are refusals; 会来, 准时到, will be there are the positive meaning. Returns the
        tokens with the units in them and whether some part cannot be read at all (a negated refusal
        不是不参加, 没签到, 不1)."""
        toks = list(tokens)
        solid_at = [i for i, k in enumerate(toks) if k.role != "space"]
        solid = [toks[i] for i in solid_at]
        invalid = False
        units: list[tuple[int, int, M]] = []  # first and last index in solid, meaning
        i = 0
        while i < len(solid):
            tk = solid[i]
            nxt1 = solid[i + 1] if i + 1 < len(solid) else None
            if tk.role in ("neg", "neg_past"):
                j = i + 1
                while j < len(solid) and (solid[j].role == "verb" or solid[j].text in _NEGATED):
                    j += 1
                target = solid[j] if j < len(solid) else None
                if target is not None and target.role in ("answer", "weak") and _adjacent(solid[i : j + 1]):
                    if tk.role == "neg" and self._negatable(target):
                        units.append((i, j, self.no))
                    else:
                        invalid = True  # 不是不参加, 没签到, 不1, not yes
                    i = j + 1
                    continue
                after = solid[j] if j < len(solid) else None
                if (
                    tk.role == "neg"
                    and j > i + 1
                    and solid[j - 1].role == "verb"
                    and _adjacent(solid[i:j])
                    and _ends_unit(after)
                ):
                    units.append((i, j - 1, self.no))
                    i = j
                    continue
            elif tk.role in ("answer", "verb") and nxt1 is not None and nxt1.role == "neg_suffix":
                if tk.role == "verb" or self._negatable(tk):
                    units.append((i, i + 1, self.no))
                else:
                    invalid = True  # 签到不了
                i += 2
                continue
            elif tk.role == "adverb":
                j = i
                while j < len(solid) and solid[j].role == "adverb":
                    j += 1
                after = solid[j + 1] if j + 1 < len(solid) else None
                if (
                    j < len(solid)
                    and solid[j].role == "verb"
                    and _adjacent(solid[i : j + 1])
                    and _ends_unit(after)
                ):
                    units.append((i, j, self.yes))
                    i = j + 1
                    continue
            i += 1
        if not units:
            return toks, invalid
        out: list[_Token] = []
        absorbed: set[int] = set()
        starts = {solid_at[a]: (solid_at[b], mm) for a, b, mm in units}
        for idx, k in enumerate(toks):
            if idx in absorbed:
                continue
            if idx in starts:
                last, mm = starts[idx]
                absorbed.update(range(idx, last + 1))
                text = "".join(x.text for x in toks[idx : last + 1])
                out.append(_Token("answer", text, k.start, toks[last].end, mm))
                continue
            out.append(k)
        return out, invalid

    def _negatable(self, tk: _Token) -> bool:
        """Whether a negation before this answer makes a refusal: a word of ``yes`` that is not a digit
        or an interjection (不参加 from 参加; but 不1, not yes, 不是 mean nothing)."""
        return (
            tk.role == "answer" and tk.meaning == self.yes and not tk.digits and tk.text not in _INTERJECTIONS
        )

    def _meaning(self, tokens: list[_Token]) -> M | None:
        """The one meaning the answers in the reply give (weak ones count only alone), None if none
        or several that no meaning absorbs."""
        strong = {cast(M, k.meaning) for k in tokens if k.role == "answer"}
        if not strong:
            strong = {cast(M, k.meaning) for k in tokens if k.role == "weak"}
        if len(strong) > 1:
            strong = {x for x in strong if self.absorbs.get(x, frozenset()) >= strong - {x}}
        return strong.pop() if len(strong) == 1 else None

    def _understood(self, tokens: list[_Token], meaning: M) -> list[_Token] | None:
        """For a meaning that is not free: whether the reply is nothing but its answers, politeness, at
        most one name and notes — each note in a clause of its own and, except beside a refusal, after
        the answer. Returns the name tokens (to be left out of the note), or None."""
        names: list[_Token] = []
        seen_answer = False
        beside = _FILLERISH | ({"reason"} if meaning == self.no else set())
        for clause in _clauses(tokens):
            solid = _solid(clause)
            if not solid:
                continue
            if any(k.role in ("answer", "weak") for k in solid):
                for pos, k in enumerate(solid):
                    if k.role in ("answer", "weak") or k.role in beside:
                        continue
                    if k.role == "conj" and pos == 0:
                        continue
                    edge = all(x.role in _FILLERISH for x in solid[:pos]) or all(
                        x.role in _FILLERISH for x in solid[pos + 1 :]
                    )
                    if k.role == "unknown" and _is_name(k.text) and edge:
                        names.append(k)
                        continue
                    return None
                seen_answer = True
                continue
            rest = [k for k in solid if k.role not in _FILLERISH and k.role != "title"]
            if not rest:
                continue  # politeness, a greeting or a title: 领导，…; 谢谢。
            if len(rest) == 1 and rest[0].role == "unknown" and _is_name(rest[0].text):
                names.append(rest[0])
                continue
            if not seen_answer and meaning != self.no:
                return None  # a note before a "yes" may be what the answer depends on
        return names if len(names) <= 1 else None

    def _remainder(
        self, p: Normalised, tokens: list[_Token], names: Sequence[_Token], *, reason: bool = False
    ) -> str:
        """The reply as written without its answers, ``names`` and the clauses of nothing but politeness
        (我已请假，谢谢), and without an adverb just before an answer (要请假): a leave's reason, an
        answer's note."""
        drop = {(k.start, k.end) for k in names}
        # A reason keeps its times (请假，上午参加不了: the morning); a note does not (明天准时参加).
        politeness = (_FILLERISH - {"time"} if reason else _FILLERISH) | {"title", "conj"}
        for clause in _clauses(tokens):
            solid = _solid(clause)
            rest = [k for k in solid if k.role not in ("answer", "weak") and (k.start, k.end) not in drop]
            if all(k.role in politeness for k in rest):
                drop.update((k.start, k.end) for k in rest)
            for a, b in itertools.pairwise(solid):
                if a.role == "adverb" and b.role in ("answer", "weak"):
                    drop.add((a.start, a.end))
        drop.update((k.start, k.end) for k in tokens if k.role in ("answer", "weak"))
        keep = [k for k in tokens if k.role not in ("space", "sep") and (k.start, k.end) not in drop]
        while keep and keep[0].role == "polite" and not _english(keep[0]):
            keep.pop(0)  # 本人身体不适 is 身体不适; but "I'll come" stays a sentence
        if not keep:
            return ""
        start, end = keep[0].start, keep[-1].end
        pieces: list[str] = []
        at = start
        for hole_start, hole_end in sorted(x for x in drop if start <= x[0] < end):
            pieces.append(p.as_written(at, hole_start))
            at = max(at, hole_end)
        pieces.append(p.as_written(at, end))
        return " ".join(s for x in pieces if (s := x.strip(_EDGES)))


def _asks(tokens: list[_Token]) -> bool:
    """A clause that ends in a bare 不 or 没 after something: spoken questions (参加不, 请假没)."""
    for clause in _clauses(tokens):
        solid = [k for k in _solid(clause) if k.role != "particle"]
        if (
            len(solid) > 1
            and solid[-1].role in ("neg", "neg_past")
            and solid[-1].text in ("不", "没", "没有")
        ):
            return True
    return False


def _answer_beside(clause: list[_Token], roles: Collection[str]) -> bool:
    """Whether the clause holds an answer and a word of one of ``roles`` — other than one the clause
    is addressed to (向领导请假: asked the leader)."""
    solid = _solid(clause)
    return any(k.role in ("answer", "weak") for k in solid) and any(
        k.role in roles and not (i and solid[i - 1].text == "向") for i, k in enumerate(solid)
    )


def _progressive(solid: Sequence[_Token]) -> bool:
    """在/正在 just before an answer or a verb: the sender is at something now (我在参加培训)."""
    return any(
        a.text in ("在", "正在") and b.role in ("answer", "verb") and a.end == b.start
        for a, b in itertools.pairwise(solid)
    )


def _conditional(tokens: list[_Token]) -> bool:
    """就 after something said in the same clause: a condition (能参加就参加, 有空就去)."""
    for clause in _clauses(tokens):
        solid = _solid(clause)
        for pos, k in enumerate(solid):
            if k.text == "就" and any(
                x.role in ("answer", "weak", "verb", "unknown", "number", "reason") for x in solid[:pos]
            ):
                return True
    return False


def _counts(after: str) -> bool:
    """Whether a digit followed by ``after`` counts something (点, 楼, 个, pm, …) rather than answers."""
    for u in _UNIT_WORDS:
        if after.startswith(u):
            if u[-1].isascii() and u[-1].isalpha() and after[len(u) : len(u) + 1].isalpha():
                continue  # an ASCII unit must end there: "1 f" is a floor, "1 fine" is not
            return True
    return False


def _adjacent(run: Sequence[_Token]) -> bool:
    """Whether the tokens follow one another with nothing but spaces between English words."""
    for a, b in itertools.pairwise(run):
        if a.end != b.start and not (_english(a) and _english(b)):
            return False
    return True


def _ends_unit(tk: _Token | None) -> bool:
    """Whether a verb may end an answer before ``tk``: at the end, before punctuation, politeness or a
    "but" — not before a number or an unknown word (不到10分钟, 去北京)."""
    return tk is None or tk.role in ("sep", "particle", "polite", "filler", "time", "conj", "answer", "weak")


def _clauses(tokens: list[_Token]) -> list[list[_Token]]:
    """The reply split at punctuation, before a "but", and at a space that is not between two English
    words."""
    out: list[list[_Token]] = [[]]
    for idx, k in enumerate(tokens):
        if k.role == "sep":
            out.append([])
        elif k.role == "conj":
            out.append([k])
        elif k.role == "space":
            prev = next((x for x in reversed(tokens[:idx]) if x.role != "space"), None)
            nxt = next((x for x in tokens[idx + 1 :] if x.role != "space"), None)
            if not (prev is not None and nxt is not None and _english(prev) and _english(nxt)):
                out.append([])
        else:
            out[-1].append(k)
    return out


def _leading_name(tokens: list[_Token]) -> list[_Token]:
    """A name that opens the reply in a clause of its own (张三：请假，出差), to be left out of the reason."""
    clauses = [c for c in _clauses(tokens) if _solid(c)]
    if len(clauses) < 2:
        return []
    rest = [k for k in _solid(clauses[0]) if k.role not in _FILLERISH]
    if len(rest) == 1 and rest[0].role == "unknown" and _is_name(rest[0].text):
        return rest
    return []


def _english(tk: _Token) -> bool:
    return tk.text[:1].isascii() and tk.text[:1].isalpha()


def _is_cjk(text: str) -> bool:
    return all("\u3400" <= ch <= "\u9fff" or "\U00020000" <= ch <= "\U0003ffff" for ch in text)


def _is_name(text: str) -> bool:
    """A sender's name as people sign a reply: 张三, 李明华, 小王, 欧阳峰 — a common surname first,
    2–3 characters (4 with a double surname), none of which would change what the reply says."""
    if not _is_cjk(text) or any(ch in _NOT_IN_NAMES for ch in text):
        return False
    if text[:2] in _SURNAME_SET:
        return len(text) in (3, 4)
    if len(text) == 2 and text[0] in "小老":
        return text[1] in _SURNAME_SET
    return len(text) in (2, 3) and text[0] in _SURNAME_SET
