"""Training data from Wikipedia hyperlinks, as ReFinED trains.

Each article's wikitext becomes plain text, one document per paragraph that
links to at least one KB entity by an anchor that has KB candidates. The
links are those of `kb.mediawiki.iter_links`, the parser that also gives the
KB its anchor priors, so a mention's text and target are an (anchor, title)
pair the KB counted. The link anchors are the mention spans and their
targets, followed through the dump's redirects, become KB entities by
Wikipedia title (`RefinedKB.find_titles`). A link whose target has no KB
entity is a NIL mention. Documents go to the dev set or the training set by
a hash of their ID (article title and paragraph number), so the split is
deterministic and does not depend on the order or number of articles read.
The output is EL JSONL (`{id, text, labels: [{span, entity_id}], complete:
false}`), the input of `python -m spacy_refined convert`: editors link only
some of the names of a text, so the records say that their labels are not
all its mentions.
"""

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterator, List, Tuple

import numpy as np
import srsly

from ..ids import RECORD_NIL
from ..kb.mediawiki import DEFAULT_SKIPPED, UNPARSED_RE, Page, iter_links, iter_pages, plain_text, strip_nested
from ..kb.store import RefinedKB
from ..util import DumpError, PathLike

# Elements whose content is not running text.
DROPPED_ELEMENTS_RE = re.compile(
    r"<(ref|math|gallery|timeline|score|syntaxhighlight|source|pre|imagemap|chem|hiero|graph)\b[^>]*?(?:/>|>.*?</\1\s*>)",
    re.DOTALL | re.IGNORECASE,
)
EXTERNAL_LINK_RE = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*(?:\s+([^\]]*))?\]")
HEADING_RE = re.compile(r"^(=+)\s*(.*?)\s*\1\s*$")
LIST_MARKER_RE = re.compile(r"^[*#:;]+\s*")
# Sections of links and references rather than running text.
SKIPPED_SECTIONS = frozenset(
    [
        "see also",
        "references",
        "notes",
        "external links",
        "further reading",
        "bibliography",
        "sources",
        "citations",
        "footnotes",
    ]
)


@dataclass
class Paragraph:
    """Plain text with link mentions: (start, end, normalised target title)."""

    text: str
    links: List[Tuple[int, int, str]]


def wikitext_paragraphs(wikitext: str, skipped: FrozenSet[str] = DEFAULT_SKIPPED) -> List[Paragraph]:
    """Plain-text paragraphs of an article, with the spans and targets of its links.

    Templates, tables, references, files, categories, interlanguage links,
    headings and the sections of references and links are dropped; list
    items are paragraphs of their own. The links are `mediawiki.iter_links`'s
    links to articles outside those, with the same anchors.

    wikitext (str): The article's source.
    skipped (FrozenSet[str]): The link prefixes that are not articles
        (`Page.skipped`; default: English Wikipedia's).
    RETURNS (List[Paragraph]): The non-empty paragraphs, in order.
    """
    text = strip_nested(DROPPED_ELEMENTS_RE.sub("", UNPARSED_RE.sub("", wikitext)))
    paragraphs: List[Paragraph] = []
    lines: List[str] = []
    in_skipped_section = False
    for line in text.split("\n") + [""]:
        heading = HEADING_RE.match(line)
        if heading or not line.strip() or LIST_MARKER_RE.match(line):
            if lines and not in_skipped_section:
                paragraphs.append(_paragraph(" ".join(lines), skipped))
            lines = []
        if heading:
            in_skipped_section = heading.group(2).strip().lower() in SKIPPED_SECTIONS
        elif line.strip().startswith(("|", "!")):
            continue  # rows of a table the template stripping missed
        elif line.strip():
            lines.append(LIST_MARKER_RE.sub("", line))
    return [p for p in paragraphs if p.text]


def _paragraph(wikitext: str, skipped: FrozenSet[str]) -> Paragraph:
    """Text and link spans of one paragraph of wikitext without templates:
    links to articles become their anchors, other [[...]] spans are dropped."""
    builder = _TextBuilder()
    position = 0
    for link in iter_links(wikitext, skipped):
        if link.nested:
            continue
        builder.add_text(wikitext[position : link.start])
        position = link.end
        if link.title:
            builder.add_link(link.anchor, link.title)
    builder.add_text(wikitext[position:])
    return builder.paragraph()


class _TextBuilder:
    """Joins cleaned text pieces, keeping the character offsets of the links."""

    def __init__(self) -> None:
        self.text = ""
        self.links: List[Tuple[int, int, str]] = []

    def add_text(self, wikitext: str) -> None:
        self._append(plain_text(EXTERNAL_LINK_RE.sub(lambda m: m.group(1) or "", wikitext)))

    def add_link(self, anchor: str, title: str) -> None:
        start = len(self.text)
        self._append(anchor)
        self.links.append((start, len(self.text), title))

    def _append(self, piece: str) -> None:
        if self.text.endswith(" ") and piece.startswith(" "):
            piece = piece[1:]
        if not self.text:
            piece = piece.lstrip()
        self.text += piece

    def paragraph(self) -> Paragraph:
        return Paragraph(self.text.rstrip(), self.links)


def is_dev(doc_id: str, dev_share: float) -> bool:
    """Whether a document belongs to the dev set: a stable hash of its ID."""
    return zlib.crc32(doc_id.encode("utf8")) / 2**32 < dev_share


def read_redirects(path: PathLike, kb: RefinedKB, batch_size: int = 100_000) -> Dict[str, int]:
    """Redirect titles of a dump whose targets are KB entities, mapped to those entities."""
    redirects: Dict[str, int] = {}
    pending: List[Tuple[str, str]] = []

    def resolve() -> None:
        found = kb.find_titles([target for _, target in pending])
        redirects.update((title, int(index)) for (title, _), index in zip(pending, found) if index >= 0)
        pending.clear()

    for page in iter_pages(path):
        if page.redirect:
            pending.append((page.title, page.redirect))
            if len(pending) >= batch_size:
                resolve()
    resolve()
    return redirects


def wikipedia_records(
    path: PathLike,
    kb: RefinedKB,
    *,
    max_articles: int = 0,
    min_chars: int = 50,
) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """EL records from a Wikipedia dump's articles: (article title, record), in dump order.

    max_articles (int): Stop after this many articles with records (0: all).
    min_chars (int): Skip shorter paragraphs. Paragraphs without a link to a KB entity whose anchor has KB candidates are skipped too.
    """
    redirects = read_redirects(path, kb)
    n_articles = 0
    for page in iter_pages(path):
        if page.redirect:
            continue
        records = list(_article_records(page, kb, redirects, min_chars))
        if not records:
            continue
        yield from ((page.title, record) for record in records)
        n_articles += 1
        if max_articles and n_articles >= max_articles:
            break


def _article_records(page: Page, kb: RefinedKB, redirects: Dict[str, int], min_chars: int) -> Iterator[Dict[str, Any]]:
    paragraphs = [p for p in wikitext_paragraphs(page.wikitext, page.skipped) if p.links and len(p.text) >= min_chars]
    titles = [title for p in paragraphs for _, _, title in p.links]
    if not titles:
        return
    found = kb.find_titles(titles)
    found = np.where(found >= 0, found, [redirects.get(t, -1) for t in titles])
    has_candidates = kb.candidates([p.text[s:e] for p in paragraphs for s, e, _ in p.links], 1).lengths > 0
    offset = 0
    for number, paragraph in enumerate(paragraphs, 1):
        indices = found[offset : offset + len(paragraph.links)]
        resolvable = (indices >= 0) & has_candidates[offset : offset + len(paragraph.links)]
        offset += len(paragraph.links)
        if not resolvable.any():
            continue
        labels = [
            {"span": [start, end], "entity_id": kb.entity_id(int(index)) if index >= 0 else RECORD_NIL}
            for (start, end, _), index in zip(paragraph.links, indices)
        ]
        yield {"id": f"{page.title}#{number}", "text": paragraph.text, "labels": labels, "complete": False}


def write_wikipedia_corpus(
    path: PathLike,
    kb: RefinedKB,
    output_dir: PathLike,
    *,
    dev_share: float = 0.2,
    max_articles: int = 0,
    min_chars: int = 50,
) -> Dict[str, Dict[str, int]]:
    """Write `train.jsonl` and `dev.jsonl` under `output_dir`; counts of each split.

    RAISES (DumpError): If the dump gives no documents, or a split is empty.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    counts = {split: {"articles": 0, "documents": 0, "mentions": 0, "linked": 0} for split in ("train", "dev")}
    seen = set()
    targets = {split: output_dir / f"{split}.jsonl" for split in counts}
    files = {split: target.open("w", encoding="utf8") for split, target in targets.items()}
    try:
        for title, record in wikipedia_records(path, kb, max_articles=max_articles, min_chars=min_chars):
            split = "dev" if is_dev(record["id"], dev_share) else "train"
            files[split].write(srsly.json_dumps(record) + "\n")
            if (split, title) not in seen:
                seen.add((split, title))
                counts[split]["articles"] += 1
            counts[split]["documents"] += 1
            counts[split]["mentions"] += len(record["labels"])
            counts[split]["linked"] += sum(label["entity_id"] != RECORD_NIL for label in record["labels"])
    finally:
        for file_ in files.values():
            file_.close()
    for split, count in counts.items():
        if not count["documents"] or not count["linked"]:
            for target in targets.values():
                target.unlink()
            raise DumpError(
                path,
                f"no {split} documents with linked mentions: the corpus is empty (are the dump's articles linked to the KB's entities? dev share {dev_share})",
            )
    return counts
