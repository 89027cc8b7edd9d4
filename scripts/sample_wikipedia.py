"""Cut a small Wikipedia pages-articles dump (same XML) out of a larger one.

Keeps the <siteinfo>, every redirect page, and the articles whose links
most often reach entities of a KB (per byte of wikitext, redirects
followed) until `--max-bytes` of page XML; pages are copied verbatim, in
dump order.

    python scripts/sample_wikipedia.py DUMP KB OUTPUT.xml.bz2 --max-bytes 900000
"""

import bz2
import re
from pathlib import Path

import typer

from spacy_refined.kb.mediawiki import iter_pages as read_articles
from spacy_refined.kb.store import RefinedKB
from spacy_refined.training.wikipedia_corpus import wikitext_paragraphs
from spacy_refined.util import open_binary

PAGE_RE = re.compile(rb"[ \t]*<page>.*?</page>\n", re.DOTALL)
TITLE_RE = re.compile(rb"<title>(.*?)</title>")


def main(
    dump: Path,
    kb_path: Path,
    output: Path,
    max_bytes: int = typer.Option(900_000, help="Budget of uncompressed page XML for the articles"),
) -> None:
    kb = RefinedKB.load(kb_path)
    articles = list(read_articles(dump))
    redirects = {a.title: a.redirect for a in articles if a.redirect}
    hits = {}
    for article in articles:
        if article.redirect:
            continue
        titles = [
            redirects.get(t, t) for p in wikitext_paragraphs(article.wikitext, article.skipped) for _, _, t in p.links
        ]
        hits[article.title] = int((kb.find_titles(titles) >= 0).sum()) if titles else 0
    with open_binary(dump) as file_:
        data = file_.read()
    pages = list(PAGE_RE.finditer(data))
    sizes = {}
    for page in pages:
        title = TITLE_RE.search(page.group()).group(1).decode("utf8")
        sizes[title] = (page, len(page.group()))
    ranked = sorted(hits, key=lambda t: (-hits[t] / sizes[t][1], t))
    keep = set(redirects)
    used = 0
    for title in ranked:
        if hits[title] and used + sizes[title][1] <= max_bytes:
            keep.add(title)
            used += sizes[title][1]
    with bz2.open(output, "wb") as out:
        out.write(data[: pages[0].start()])
        for page in pages:
            if TITLE_RE.search(page.group()).group(1).decode("utf8") in keep:
                out.write(page.group())
        out.write(b"</mediawiki>\n")
    chosen = sorted(keep - set(redirects))
    typer.echo(f"wrote {len(chosen)} articles ({', '.join(chosen)}) and {len(redirects)} redirects to {output}")


if __name__ == "__main__":
    typer.run(main)
