"""Streaming reader for Wikipedia pages-articles XML dumps."""
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import (
    BinaryIO,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Optional,
    Sequence,
    Tuple,
    Union,
)
from xml.etree import ElementTree
from xml.parsers.expat import ErrorString

from .errors import DumpError
from .normalize import normalize_title
from .wikidata import STREAM_ERRORS, open_dump

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
# [[target]] or [[target|anchor]] followed by a link trail. The target can't
# contain brackets, pipes, braces or newlines; the anchor can contain single
# brackets but no nested link, so in [[File:x.jpg|a [[b]] c]] only [[b]]
# matches.
LINK_RE = re.compile(
    r"\[\[([^\[\]|{}<>\n]*)"
    r"(?:\|([^\[\]]*(?:(?:\[(?!\[)|\](?!\]))[^\[\]]*)*))?"
    r"\]\]([a-z]*)"
)
# Text that MediaWiki doesn't parse for links.
UNPARSED_RE = re.compile(r"<!--.*?-->|<nowiki>.*?</nowiki>", re.DOTALL)
BOLD_ITALIC_RE = re.compile(r"'{2,}")
WHITESPACE_RE = re.compile(r"\s+")
EXPORT_NS_RE = re.compile(r"(\{http://www\.mediawiki\.org/xml/export-0\.\d+/\})?")


@dataclass
class WikiPage:
    """A page of a Wikipedia dump, with the links in its wikitext."""

    title: str
    namespace: int
    redirect: Optional[str] = None
    links: List[Tuple[str, str]] = field(default_factory=list)


def parse_links(
    wikitext: str, namespaces: Optional[Iterable[str]] = None
) -> List[Tuple[str, str]]:
    """Find the links to articles in wikitext.

    wikitext (str): The page source.
    namespaces (Optional[Iterable[str]]): Names of the namespaces other than
        the article namespace, whose links are skipped. Defaults to English
        Wikipedia's.
    RETURNS (List[Tuple[str, str]]): (anchor text, normalised target title)
        pairs, in order.
    """
    if namespaces is None:
        namespaces = DEFAULT_NAMESPACES
    return _parse_links(wikitext, _skipped_prefixes(namespaces))


def read_wikipedia(
    path: Union[str, Path], namespaces: Sequence[int] = (0,)
) -> Iterator[WikiPage]:
    """Stream the pages of a MediaWiki XML export (e.g. pages-articles).

    path (str / Path): The dump, plain, .bz2 or .gz.
    namespaces (Sequence[int]): Namespace numbers of the pages to yield.
    YIELDS (WikiPage): The pages, in dump order.
    RAISES (DumpError): If the XML or the compressed stream is truncated or
        corrupt.
    """
    with open_dump(path) as file_:
        try:
            yield from _read_pages(path, file_, frozenset(namespaces))
        except ElementTree.ParseError as e:
            line, column = e.position
            raise DumpError(
                path, f"invalid XML: {ErrorString(e.code)}", line=line, column=column
            ) from e
        except STREAM_ERRORS as e:
            raise DumpError(
                path,
                f"truncated or corrupt compressed stream ({e})",
                offset=file_.tell(),
            ) from e


def _read_pages(
    path: Union[str, Path], file_: BinaryIO, wanted: FrozenSet[int]
) -> Iterator[WikiPage]:
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
    skipped = _skipped_prefixes(namespace_ids)
    for event, elem in events:
        if event != "end":
            continue
        if elem.tag == namespaces_tag:
            namespace_ids = {ns.text: int(ns.get("key")) for ns in elem if ns.text}
            skipped = _skipped_prefixes(namespace_ids)
        elif elem.tag == page_tag:
            title = elem.findtext(title_tag, "")
            ns_text = elem.findtext(ns_tag)
            if ns_text is None:
                namespace = namespace_ids.get(title.split(":", 1)[0], 0)
            else:
                namespace = int(ns_text)
            if namespace in wanted:
                redirect = None
                redirect_elem = elem.find(redirect_tag)
                if redirect_elem is not None:
                    redirect = normalize_title(redirect_elem.get("title", "")) or None
                # A history dump has several revisions: the last is the latest.
                texts = elem.findall(text_path)
                wikitext = (texts[-1].text or "") if texts else ""
                yield WikiPage(
                    title=normalize_title(title),
                    namespace=namespace,
                    redirect=redirect,
                    links=_parse_links(wikitext, skipped),
                )
            root.clear()


def _skipped_prefixes(namespaces: Iterable[str]) -> FrozenSet[str]:
    names = [*namespaces, *NAMESPACE_ALIASES]
    return frozenset(_prefix_key(name) for name in names) | INTERWIKI_PREFIXES


def _prefix_key(prefix: str) -> str:
    return WHITESPACE_RE.sub(" ", prefix.replace("_", " ")).strip().lower()


def _parse_links(wikitext: str, skipped: FrozenSet[str]) -> List[Tuple[str, str]]:
    links = []
    for match in LINK_RE.finditer(UNPARSED_RE.sub("", wikitext)):
        target, anchor, trail = match.groups()
        target = target.strip()
        if target.startswith(":"):
            target = target[1:]
        if ":" in target:
            prefix = target.split(":", 1)[0].strip()
            if LANGUAGE_PREFIX_RE.fullmatch(prefix) or _prefix_key(prefix) in skipped:
                continue
        title = normalize_title(target)
        if not title:
            continue
        anchor = _clean_anchor((target if anchor is None else anchor) + trail)
        if anchor:
            links.append((anchor, title))
    return links


def _clean_anchor(anchor: str) -> str:
    if "&" in anchor:
        anchor = html.unescape(anchor)
    anchor = BOLD_ITALIC_RE.sub("", anchor)
    return WHITESPACE_RE.sub(" ", anchor).strip()
