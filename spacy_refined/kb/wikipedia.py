"""Anchor texts and redirects of a Wikipedia pages-articles dump, for the KB's
priors. Pages and links come from `mediawiki`, as for the training corpus."""

from dataclasses import dataclass, field
from typing import FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..util import PathLike
from .mediawiki import DEFAULT_NAMESPACES, UNPARSED_RE, iter_links, iter_pages, skipped_prefixes


@dataclass
class WikiPage:
    """A page of a Wikipedia dump, with the links in its wikitext."""

    title: str
    namespace: int
    redirect: Optional[str] = None
    links: List[Tuple[str, str]] = field(default_factory=list)


def parse_links(wikitext: str, namespaces: Optional[Iterable[str]] = None) -> List[Tuple[str, str]]:
    """Find the links to articles in wikitext, wherever they are: in the text,
    templates, references and file captions.

    wikitext (str): The page source.
    namespaces (Optional[Iterable[str]]): Names of the namespaces other than
        the article namespace, whose links are skipped. Defaults to English
        Wikipedia's.
    RETURNS (List[Tuple[str, str]]): (anchor text, normalised target title)
        pairs, in order.
    """
    return _anchor_pairs(wikitext, skipped_prefixes(DEFAULT_NAMESPACES if namespaces is None else namespaces))


def read_wikipedia(path: PathLike, namespaces: Sequence[int] = (0,)) -> Iterator[WikiPage]:
    """Stream the pages of a MediaWiki XML export (e.g. pages-articles).

    path (str / Path): The dump, plain, .bz2 or .gz.
    namespaces (Sequence[int]): Namespace numbers of the pages to yield.
    YIELDS (WikiPage): The pages, in dump order.
    RAISES (DumpError): If the file is not a MediaWiki XML export, or the XML
        or the compressed stream is truncated or corrupt.
    """
    for page in iter_pages(path, namespaces):
        yield WikiPage(
            title=page.title,
            namespace=page.ns,
            redirect=page.redirect,
            links=_anchor_pairs(page.wikitext, page.skipped),
        )


def _anchor_pairs(wikitext: str, skipped: FrozenSet[str]) -> List[Tuple[str, str]]:
    return [(link.anchor, link.title) for link in iter_links(UNPARSED_RE.sub("", wikitext), skipped) if link.title]
