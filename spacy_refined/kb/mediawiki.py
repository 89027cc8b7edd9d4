"""MediaWiki XML exports and wikitext: the one page reader and the one link
parser, shared by the KB builder (anchor priors, redirects) and the Wikipedia
training corpus (mention spans), so both see the same pages and the same links.
"""

import html
import re
from dataclasses import dataclass
from typing import (
    BinaryIO,
    Collection,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
)
from xml.etree import ElementTree
from xml.parsers.expat import ErrorString

from ..util import STREAM_ERRORS, DumpError, PathLike, open_binary
from .normalize import normalize_title

# Names of English Wikipedia's namespaces other than the article namespace,
# used when no <siteinfo> is available.
DEFAULT_NAMESPACES = {
    "Media": -2,
    "Special": -1,
    "Talk": 1,
    "User": 2,
    "User talk": 3,
    "Wikipedia": 4,
    "Wikipedia talk": 5,
    "File": 6,
    "File talk": 7,
    "MediaWiki": 8,
    "MediaWiki talk": 9,
    "Template": 10,
    "Template talk": 11,
    "Help": 12,
    "Help talk": 13,
    "Category": 14,
    "Category talk": 15,
    "Portal": 100,
    "Portal talk": 101,
    "Book": 108,
    "Book talk": 109,
    "Draft": 118,
    "Draft talk": 119,
    "Education Program": 446,
    "Education Program talk": 447,
    "TimedText": 710,
    "TimedText talk": 711,
    "Module": 828,
    "Module talk": 829,
    "Gadget": 2300,
    "Gadget talk": 2301,
    "Gadget definition": 2302,
    "Gadget definition talk": 2303,
}
# Aliases that <siteinfo> doesn't list (MediaWiki's and English Wikipedia's).
NAMESPACE_ALIASES = {
    "Image": 6,
    "Image talk": 7,
    "Project": 4,
    "Project talk": 5,
    "WP": 4,
    "WT": 5,
}
# Interwiki prefixes of sister projects and common external targets.
INTERWIKI_PREFIXES = frozenset(
    "b bugzilla c commons d doi foundation hdl m meta mw n phab q s species "
    "v voy w wikibooks wikidata wikinews wikiquote wikisource wikispecies "
    "wikiversity wikivoyage wikt wiktionary wmf".split()
)
# Interlanguage prefixes: "fr", "zh-yue", "be-x-old", ... and "simple".
LANGUAGE_PREFIX_RE = re.compile(r"[a-z]{2,3}(?:-[a-z0-9]+)*|simple")
# Text that MediaWiki doesn't parse for links.
UNPARSED_RE = re.compile(r"<!--.*?-->|<nowiki>.*?</nowiki>", re.DOTALL)
EXPORT_NS_RE = re.compile(r"(\{http://www\.mediawiki\.org/xml/export-0\.\d+/\})?")
LINK_BRACKETS_RE = re.compile(r"\[\[|\]\]")
# Letters after a link's closing brackets that belong to its anchor: [[dog]]s.
TRAIL_RE = re.compile(r"[a-z]+")
# Characters a link target can't contain.
INVALID_TARGET_RE = re.compile(r"[\[\]{}<>\n]")
# Nested structures: templates {{...}} and tables {|...|}.
NESTED_RE = re.compile(r"\{\{|\}\}|^\s*\{\||^\s*\|\}", re.MULTILINE)
TAG_RE = re.compile(r"</?[a-zA-Z][^>]*>")
BOLD_ITALIC_RE = re.compile(r"'{2,}")
WHITESPACE_RE = re.compile(r"\s+")
# What dropped templates leave: "Angola ( ; Kikongo...)" -> "Angola (Kikongo...)",
# "X () is" -> "X is".
EMPTY_PARENTHESES_RE = re.compile(r"\s*\(\s*[;,]?\s*\)|(?<=\()\s*[;,]\s*")
SPACE_BEFORE_PUNCTUATION_RE = re.compile(r"\s+(?=[,;.:])")


@dataclass(frozen=True)
class Page:
    """A page of a MediaWiki XML export.

    title (str): The normalised title.
    ns (int): The namespace number.
    redirect (Optional[str]): The normalised target title of a redirect page.
    wikitext (str): The source of the latest revision.
    skipped (FrozenSet[str]): The link prefixes of the page's wiki that are
        not articles (its namespace names, from the dump's <siteinfo>), for
        `iter_links`.
    """

    title: str
    ns: int
    redirect: Optional[str]
    wikitext: str
    skipped: FrozenSet[str]


@dataclass(frozen=True)
class Link:
    """A [[...]] span of wikitext.

    start (int): Offset of the opening brackets.
    end (int): Offset after the closing brackets and the link trail; the end
        of the text for brackets that are never closed.
    title (str): The normalised title of the linked article; "" when the
        span is not a link to an article (a file, category, interlanguage or
        section link, a malformed or unclosed link).
    anchor (str): The plain text the link shows (its anchor or target, and
        its trail); "" when `title` is "".
    nested (bool): Whether the span lies inside another span that is not a
        link to an article, e.g. in a file's caption: a link, but not one in
        the running text.
    """

    start: int
    end: int
    title: str
    anchor: str
    nested: bool


def _prefix_key(prefix: str) -> str:
    return WHITESPACE_RE.sub(" ", prefix.replace("_", " ")).strip().lower()


def skipped_prefixes(namespaces: Iterable[str]) -> FrozenSet[str]:
    """The link prefixes that are not articles, as `iter_links` compares them.

    namespaces (Iterable[str]): Names of a wiki's namespaces other than the
        article namespace; MediaWiki's aliases and the interwiki prefixes are
        added.
    RETURNS (FrozenSet[str]): The prefixes, lower-cased with single spaces.
    """
    names = [*namespaces, *NAMESPACE_ALIASES]
    return frozenset(_prefix_key(name) for name in names) | INTERWIKI_PREFIXES


DEFAULT_SKIPPED = skipped_prefixes(DEFAULT_NAMESPACES)


def iter_pages(path: PathLike, namespaces: Collection[int] = (0,)) -> Iterator[Page]:
    """Stream the pages of a MediaWiki XML export (e.g. pages-articles).

    A page without <ns> gets the namespace its title's prefix names (article
    when none).

    path (str / Path): The dump, plain, .bz2 or .gz.
    namespaces (Collection[int]): Namespace numbers of the pages to yield.
    YIELDS (Page): The pages, in dump order.
    RAISES (DumpError): If the file is not a MediaWiki XML export, or the XML
        or the compressed stream is truncated or corrupt.
    """
    with open_binary(path) as file_:
        try:
            yield from _read_pages(path, file_, frozenset(namespaces))
        except ElementTree.ParseError as e:
            line, column = e.position
            raise DumpError(path, f"invalid XML: {ErrorString(e.code)}", line=line, column=column) from e
        except STREAM_ERRORS as e:
            raise DumpError(path, f"truncated or corrupt compressed stream ({e})", offset=file_.tell()) from e


def _read_pages(path: PathLike, file_: BinaryIO, wanted: FrozenSet[int]) -> Iterator[Page]:
    events = ElementTree.iterparse(file_, events=("start", "end"))
    _, root = next(events)
    prefix = root.tag[: root.tag.find("}") + 1]
    if not EXPORT_NS_RE.fullmatch(prefix) or root.tag != f"{prefix}mediawiki":
        raise DumpError(path, f"not a MediaWiki XML export: <{root.tag}>", line=1)
    page_tag = f"{prefix}page"
    namespaces_tag = f"{prefix}namespaces"
    title_tag = f"{prefix}title"
    ns_tag = f"{prefix}ns"
    redirect_tag = f"{prefix}redirect"
    text_path = f"{prefix}revision/{prefix}text"
    namespace_ids: Dict[str, int] = DEFAULT_NAMESPACES
    skipped = DEFAULT_SKIPPED
    for event, elem in events:
        if event != "end":
            continue
        if elem.tag == namespaces_tag:
            namespace_ids = {
                ns.text: _number(path, ns.get("key"), f"the key of namespace {ns.text!r}") for ns in elem if ns.text
            }
            skipped = skipped_prefixes(namespace_ids)
        elif elem.tag == page_tag:
            title = elem.findtext(title_tag, "")
            ns_text = elem.findtext(ns_tag)
            if ns_text is None:
                ns = namespace_ids.get(title.split(":", 1)[0], 0)
            else:
                ns = _number(path, ns_text, f"the <ns> of page {title!r}")
            if ns in wanted:
                redirect_elem = elem.find(redirect_tag)
                redirect = normalize_title(redirect_elem.get("title", "")) if redirect_elem is not None else ""
                # A history dump has several revisions: the last is the latest.
                texts = elem.findall(text_path)
                yield Page(
                    title=normalize_title(title),
                    ns=ns,
                    redirect=redirect or None,
                    wikitext=(texts[-1].text or "") if texts else "",
                    skipped=skipped,
                )
            root.clear()


def _number(path: PathLike, text: Optional[str], what: str) -> int:
    """`text` as an integer; DumpError naming `what` if it is not one."""
    try:
        return int(text)
    except (TypeError, ValueError):
        raise DumpError(path, f"{what} is not a number: {text!r}") from None


def iter_links(wikitext: str, skipped: FrozenSet[str] = DEFAULT_SKIPPED) -> Iterator[Link]:
    """The [[...]] spans of wikitext, matched by bracket depth, in order of
    their start.

    A span is a link to an article when its target is a valid title outside
    the `skipped` prefixes and its anchor holds no other span. The spans
    inside one that is not (a file's caption, a malformed or unclosed link)
    come too, marked `nested`. Comments and <nowiki> are not skipped: remove
    them first (`UNPARSED_RE`).

    wikitext (str): The wikitext.
    skipped (FrozenSet[str]): The link prefixes that are not articles, from
        `skipped_prefixes` (default: English Wikipedia's).
    YIELDS (Link): The spans.
    """
    spans: List[Tuple[int, int, int]] = []  # (start, closing brackets' start, depth)
    opened: List[int] = []
    for match in LINK_BRACKETS_RE.finditer(wikitext):
        if match.group() == "[[":
            opened.append(match.start())
        elif opened:
            start = opened.pop()
            spans.append((start, match.start(), len(opened)))
    # Brackets never closed: the rest of the text is not a link.
    spans.extend((start, len(wikitext), depth) for depth, start in enumerate(opened))
    spans.sort()
    # A span that holds another is not a link to an article: the inner one is
    # nested in a caption, a malformed or an unclosed link.
    for start, close, depth in spans:
        yield _link(wikitext, start, close, skipped, nested=depth > 0)


def _link(wikitext: str, start: int, close: int, skipped: FrozenSet[str], nested: bool) -> Link:
    """The span from `start` to the closing brackets at `close` (the end of
    the text when unclosed)."""
    if close == len(wikitext):
        return Link(start, close, "", "", nested)
    end = close + 2
    trail = TRAIL_RE.match(wikitext, end)
    if trail:
        end = trail.end()
    inner = wikitext[start + 2 : close]
    target, pipe, anchor = inner.partition("|")
    target = target.strip()
    if "[[" in inner or INVALID_TARGET_RE.search(target):
        return Link(start, end, "", "", nested)
    if target.startswith(":"):
        target = target[1:]
    if ":" in target:
        prefix = target.split(":", 1)[0].strip()
        if LANGUAGE_PREFIX_RE.fullmatch(prefix) or _prefix_key(prefix) in skipped:
            return Link(start, end, "", "", nested)
    title = normalize_title(target)
    text = plain_text(strip_nested(anchor if pipe else target) + wikitext[close + 2 : end]).strip()
    if not title or not text:
        return Link(start, end, "", "", nested)
    return Link(start, end, title, text, nested)


def strip_nested(wikitext: str) -> str:
    """Remove templates and tables, nested ones included.

    wikitext (str): The wikitext.
    RETURNS (str): The wikitext without them; an unclosed one runs to the end.
    """
    if "{" not in wikitext:
        return wikitext
    pieces: List[str] = []
    depth = 0
    position = 0
    for match in NESTED_RE.finditer(wikitext):
        token = match.group().strip()
        if token in ("{{", "{|"):
            if depth == 0:
                pieces.append(wikitext[position : match.start()])
            depth += 1
        elif depth > 0:
            depth -= 1
            if depth == 0:
                position = match.end()
    if depth == 0:
        pieces.append(wikitext[position:])
    return "".join(pieces)


def plain_text(wikitext: str) -> str:
    """Plain text of wikitext without links and templates: tags, entities,
    bold and italic marks and what dropped templates leave are removed, and
    whitespace is collapsed (not stripped).

    wikitext (str): The wikitext.
    RETURNS (str): The text.
    """
    wikitext = TAG_RE.sub("", wikitext)
    if "&" in wikitext:
        wikitext = html.unescape(wikitext)
    wikitext = EMPTY_PARENTHESES_RE.sub("", BOLD_ITALIC_RE.sub("", wikitext))
    return WHITESPACE_RE.sub(" ", SPACE_BEFORE_PUNCTUATION_RE.sub("", wikitext))
