"""The KB store: the KB reader (`kb.reader.KBReader`) as a spaCy `KnowledgeBase`.

The store only reads a KB; `kb.builder` writes one (`KBBuilder`), appends
segments to it (`append_segment`), stores its embeddings (`store_embeddings`)
and compacts it (`compact_kb`), each under the KB's write lock.
`RefinedKB.reload` shows a KB object what was written to its directory since
it was opened. Copies of a KB (`to_disk`, `to_bytes`) hold its own files
only, those its manifest and the format define.
"""

import os
import shutil
import tempfile
import weakref
from pathlib import Path, PurePosixPath
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import srsly
from spacy.kb import Candidate, KnowledgeBase
from spacy.tokens import Span
from spacy.util import SimpleFrozenList
from spacy.vocab import Vocab

from ..util import PathLike
from .candidates import person_name_candidates
from .errors import KBError
from .format import MANIFEST, is_kb_file, staging_directory
from .normalize import normalize_alias
from .reader import KBReader


class RefinedKB(KBReader, KnowledgeBase):
    """A knowledge base of entities, aliases, types and facts, opened by mmap.

    The KB reader (`KBReader`: every read of the KB, vectorised) as a
    subclass of spaCy's `KnowledgeBase`, so that spaCy's own `entity_linker`
    can use it and pipelines can save it; the ReFinED linker uses the
    vectorised `candidates` API.
    """

    def __init__(self, vocab: Vocab, entity_vector_length: int = 0, path: Optional[PathLike] = None) -> None:
        self._vector_length = entity_vector_length  # read by KnowledgeBase.__init__, through the property
        KnowledgeBase.__init__(self, vocab, entity_vector_length)
        KBReader.__init__(self, path, entity_vector_length)

    # ------------------------------------------------------------------ opening

    @classmethod
    def load(cls, path: PathLike, vocab: Optional[Vocab] = None) -> "RefinedKB":
        """Open the KB at `path` (instantly: arrays are memory-mapped)."""
        return cls(vocab if vocab is not None else Vocab(), path=path)

    # ---------------------------------------------------- spaCy KnowledgeBase

    def get_candidates(self, mention: Span) -> List[Candidate]:
        return self.get_candidates_batch([mention])[0]

    def get_candidates_batch(self, mentions: Iterable[Span]) -> List[List[Candidate]]:
        mentions = list(mentions)
        result: List[List[Candidate]] = [[] for _ in mentions]
        by_doc: Dict[int, List[int]] = {}
        for i, span in enumerate(mentions):
            by_doc.setdefault(id(span.doc), []).append(i)
        for positions in by_doc.values():
            positions.sort(key=lambda i: mentions[i].start_char)
            texts = [mentions[i].text for i in positions]
            batch = person_name_candidates(self, texts)
            vectors = self.embeddings(batch.entities) if self.has_embeddings else None
            entity_hashes = [self.vocab.strings.add(entity_id) for entity_id in self.entity_ids(batch.entities)]
            popularity = self.popularities(batch.entities).tolist()
            priors = batch.priors.tolist()
            for j, i in enumerate(positions):
                alias_hash = self.vocab.strings.add(normalize_alias(texts[j]))
                result[i] = [
                    Candidate(
                        self,
                        entity_hash=entity_hashes[c],
                        entity_freq=popularity[c],
                        entity_vector=vectors[c] if vectors is not None else [],
                        alias_hash=alias_hash,
                        prior_prob=priors[c],
                    )
                    for c in range(batch.offsets[j], batch.offsets[j + 1])
                ]
        return result

    def get_vector(self, entity: str) -> List[float]:
        return self.get_vectors([entity])[0]

    def get_vectors(self, entities: Iterable[str]) -> List[List[float]]:
        """Description embeddings; zeros for IDs not in the KB (e.g. "NIL"), as spaCy's own KB does."""
        indices = self.find(list(entities))
        vectors = np.zeros((len(indices), self.entity_vector_length), dtype=np.float32)
        known = indices >= 0
        if known.any():
            vectors[known] = self.embeddings(indices[known])
        return vectors.tolist()

    def to_disk(self, path: PathLike, exclude: Iterable[str] = SimpleFrozenList()) -> None:
        """Copy the KB's own files to `path` (written aside, then renamed into
        place); nothing else in its directory (lock, leftovers) is copied.

        path (str / Path): The directory to write: new, or a KB to replace.
        RAISES (KBError): If the KB is empty, or `path` exists and is not a KB.
        """
        path = Path(path)
        names = self._own_files()
        if path.resolve() == self.path.resolve():
            return
        with staging_directory(path) as staging:
            for name in names:
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(self.path / name, staging / name)

    def from_disk(self, path: PathLike, exclude: Iterable[str] = SimpleFrozenList()) -> "RefinedKB":
        self._open(Path(path))
        return self

    def to_bytes(self, **kwargs) -> bytes:
        """The KB's own files (see `to_disk`), as one msgpack blob of name -> bytes."""
        return srsly.msgpack_dumps({name: (self.path / name).read_bytes() for name in self._own_files()})

    def from_bytes(self, bytes_data: bytes, *, exclude: Tuple[str] = tuple()) -> "RefinedKB":
        """Open a KB serialized by `to_bytes`: its files are written to a fresh
        temporary directory (removed with the object), and nowhere else.

        bytes_data (bytes): The blob.
        RETURNS (RefinedKB): The KB.
        RAISES (KBError): If the blob is not a KB's, or names a file that is
            not a KB file (`../`, absolute, unknown); nothing is written then.
        """
        files = _checked_files(srsly.msgpack_loads(bytes_data))
        directory = Path(tempfile.mkdtemp(prefix="spacy-refined-kb-"))
        weakref.finalize(self, shutil.rmtree, directory, True)
        for name, data in files.items():
            target = directory.joinpath(*PurePosixPath(name).parts)
            target.parent.mkdir(exist_ok=True)
            # O_EXCL | O_NOFOLLOW: a fresh file, never through a link.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with open(fd, "wb") as file_:
                file_.write(data)
        self._open(directory)
        return self


def _checked_files(files: Any) -> Dict[str, bytes]:
    """The files of a `to_bytes` blob, once each name is known to be one of a
    KB's files (a relative path inside it: no `..`, no absolute name)."""
    if not isinstance(files, dict) or MANIFEST not in files:
        raise KBError("these bytes are not a serialized spacy-refined KB (no manifest)")
    for name, data in files.items():
        parts = PurePosixPath(name).parts if isinstance(name, str) else ()
        if (
            not isinstance(data, bytes)
            or not parts
            or ".." in parts
            or "\\" in name
            or PurePosixPath(name).is_absolute()
        ):
            raise KBError(f"serialized KB names a file outside its directory: {name!r}")
    try:
        manifest = srsly.json_loads(files[MANIFEST])
        allowed = all(is_kb_file(name, manifest) for name in files)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise KBError("serialized KB has an unreadable manifest") from None
    if not allowed:
        unknown = [name for name in files if not is_kb_file(name, manifest)]
        raise KBError(f"serialized KB holds files that are not a KB's: {', '.join(map(repr, unknown[:5]))}")
    return files
