"""The `refined_kb` component: one KB shared by the components of a pipeline.

A KB is a heavy, shared resource (up to tens of GB, memory-mapped), so it is
owned by a small non-trainable component and found by its consumers
(`refined_linker`, and any later component that reasons over the KB), the way
spacy-transformers' listeners find their `transformer`: a consumer names its
KB component in its `kb_component` setting ("*": any), and spaCy links the two
whenever the pipeline is built, loaded or initialized. The KB is therefore
opened once, saved once with the pipeline, and an entity added to it is seen by
every consumer at once.
"""

import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import srsly
from spacy import util
from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab

from ..kb.errors import KBError
from ..kb.store import RefinedKB

KB_COPY_MAX_BYTES = 200 * 2**20
KBLoader = Callable[[Vocab], RefinedKB]


@Language.factory(
    "refined_kb",
    assigns=[],
    default_config={"kb_copy": "auto", "external_kb_path": None},
)
def make_refined_kb(
    nlp: Language, name: str, kb_copy: Union[bool, str], external_kb_path: Optional[str]
) -> "KnowledgeBaseComponent":
    """Create a `refined_kb` component, which holds the pipeline's KB for the
    components that consume it.

    kb_copy (Union[bool, str]): Whether the KB is copied into the pipeline when
        it is saved: true, false (the pipeline refers to the KB by its absolute
        path) or "auto" (copied if it takes at most 200 MB on disk).
    external_kb_path (Optional[str]): Open the KB at this path when the
        pipeline is loaded, instead of the copy saved with it or the path it
        recorded: for a KB too large to copy, moved elsewhere, or grown with
        `kb add`. The KB must have the type inventory the consumers were
        trained with.
    RETURNS (KnowledgeBaseComponent): The component.
    """
    return KnowledgeBaseComponent(nlp.vocab, name, kb_copy=kb_copy, external_kb_path=external_kb_path)


class KnowledgeBaseComponent(Pipe):
    """Holds a `RefinedKB` for the pipeline. It does not change documents.

    It implements spaCy's listened-to protocol (`find_listeners`,
    `listener_map`, ...): spaCy calls `find_listeners` with each later
    component, and a component whose `kb_component` setting names this one (or
    is "*") is handed it through `component.listen_to_kb(self)`.
    """

    def __init__(self, vocab: Vocab, name: str, *, kb_copy: Union[bool, str], external_kb_path: Optional[str]) -> None:
        if kb_copy not in (True, False, "auto"):
            raise ValueError(f'[{name}] kb_copy must be true, false or "auto", not {kb_copy!r}')
        self.vocab = vocab
        self.name = name
        self.model = None
        self.kb_copy = kb_copy
        self.external_kb_path = external_kb_path
        self.cfg: Dict[str, Any] = {"kb_path": None}
        self.kb: Optional[RefinedKB] = None
        self.listeners: List[Any] = []
        self.listener_map: Dict[str, List[Any]] = {}
        self.listening_components: List[str] = []

    # ------------------------------------------------------------ listeners

    def add_listener(self, listener: Any, component_name: str) -> None:
        """Register a consuming component (spaCy's listened-to protocol)."""
        self.listener_map.setdefault(component_name, [])
        if listener not in self.listener_map[component_name]:
            self.listener_map[component_name].append(listener)
        if listener not in self.listeners:
            self.listeners.append(listener)
        if component_name not in self.listening_components:
            self.listening_components.append(component_name)
        listener.listen_to_kb(self)

    def remove_listener(self, listener: Any, component_name: str) -> bool:
        """Forget a consuming component; True if it was registered."""
        if listener not in self.listener_map.get(component_name, []):
            return False
        self.listener_map[component_name].remove(listener)
        if not self.listener_map[component_name]:
            del self.listener_map[component_name]
            self.listening_components.remove(component_name)
        self.listeners.remove(listener)
        return True

    def find_listeners(self, component: Any) -> None:
        """Register `component` if its `kb_component` setting names this component or is "*"."""
        if getattr(component, "kb_component", None) in ("*", self.name) and hasattr(component, "listen_to_kb"):
            self.add_listener(component, component.name)

    # ------------------------------------------------------------------ KB

    def __call__(self, doc: Doc) -> Doc:
        return doc

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        kb_loader: Optional[KBLoader] = None,
    ) -> None:
        """Open the KB: from `kb_loader` (`[initialize.components.NAME.kb_loader]`,
        e.g. `spacy_refined.KBFromPath.v1`), else from `external_kb_path`.

        kb_loader (Optional[Callable[[Vocab], RefinedKB]]): Opens the KB.
        """
        if kb_loader is not None:
            self.set_kb(kb_loader(self.vocab))
        elif self.external_kb_path is not None:
            self.set_kb(RefinedKB.load(self.external_kb_path, self.vocab))
        else:
            raise KBError(
                f"[{self.name}] no KB to initialize with: set [initialize.components.{self.name}.kb_loader] "
                f'(@misc = "spacy_refined.KBFromPath.v1", path = a KB built with `python -m spacy_refined kb build`)'
            )

    def set_kb(self, kb: RefinedKB) -> None:
        """Use `kb` from now on, in this component and in its consumers."""
        self.kb = kb
        self.cfg["kb_path"] = str(kb.path.resolve()) if kb.path is not None else None
        for listener in self.listeners:
            listener.listen_to_kb(self)

    def require_kb(self, consumer: str) -> RefinedKB:
        """The KB, or a KBError saying how to give one (`consumer`: who asks)."""
        if self.kb is None:
            raise KBError(
                f"[{consumer}] the KB component {self.name!r} has no KB: initialize the pipeline with "
                f"[initialize.components.{self.name}.kb_loader], or load a trained pipeline"
            )
        return self.kb

    # ------------------------------------------------------- serialization

    def _copy_kb(self) -> bool:
        if self.kb is None:
            return False
        if self.kb_copy == "auto":
            return self.kb.nbytes <= KB_COPY_MAX_BYTES
        return bool(self.kb_copy)

    def to_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> None:
        """Save the settings and, if `kb_copy`, the KB under `path`."""
        path = Path(path)
        serialize = {"cfg": lambda p: srsly.write_json(p, self.cfg)}
        if self._copy_kb():
            serialize["kb"] = lambda p: self.kb.to_disk(p)
        elif (path / "kb").exists() and (self.kb is None or self.kb.path.resolve() != (path / "kb").resolve()):
            shutil.rmtree(path / "kb")  # a KB copied by an earlier save
        util.to_disk(path, serialize, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "KnowledgeBaseComponent":
        """Load the component; its KB from `external_kb_path`, else the copy, else the recorded path."""
        path = Path(path)
        util.from_disk(path, {"cfg": lambda p: self.cfg.update(srsly.read_json(p))}, exclude)
        if "kb" not in exclude:
            copied = path / "kb"
            self._load_kb(copied if copied.exists() else None)
        return self

    def to_bytes(self, *, exclude: Iterable[str] = tuple()) -> bytes:
        serialize = {
            "cfg": lambda: srsly.json_dumps(self.cfg),
            "kb": lambda: self.kb.to_bytes() if self._copy_kb() else b"",
        }
        return util.to_bytes(serialize, exclude)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "KnowledgeBaseComponent":
        kb_bytes: List[bytes] = []
        deserialize = {"cfg": lambda b: self.cfg.update(srsly.json_loads(b)), "kb": kb_bytes.append}
        util.from_bytes(bytes_data, deserialize, exclude)
        if "kb" not in exclude:
            if kb_bytes and kb_bytes[0] and self.external_kb_path is None:
                self.set_kb(RefinedKB(self.vocab).from_bytes(kb_bytes[0]))
            else:
                self._load_kb(None)
        return self

    def _load_kb(self, copied: Optional[Path]) -> None:
        """Open `external_kb_path`, else the copy, else the recorded path (none before initialization)."""
        path = self.external_kb_path or copied or self.cfg.get("kb_path")
        if path is None:
            return
        if not Path(path).exists():
            raise KBError(
                f"[{self.name}] the KB at {path} does not exist: set `external_kb_path` in "
                f"[components.{self.name}] to a copy of the KB the pipeline was trained with"
            )
        self.set_kb(RefinedKB.load(path, self.vocab))


class KBListener:
    """What every component that uses a `refined_kb` component's KB shares:
    being found by it (`kb_component`, `listen_to_kb`), the `kb` property, and
    a clear error when there is no KB.

    A subclass sets `self.name` and `self.kb_component`, and may override
    `kb_changed` to check a KB it meets for the first time (e.g. against the
    type inventory its model was trained with) and to drop what it derived
    from the previous one.
    """

    name: str
    kb_component: str
    _kb_source: Optional[KnowledgeBaseComponent] = None
    _kb_seen: Optional[RefinedKB] = None

    def listen_to_kb(self, source: KnowledgeBaseComponent) -> None:
        """Take the KB from `source` (called by the `refined_kb` component
        when spaCy links the pipeline's components, and when its KB changes)."""
        self._kb_source = source

    @property
    def kb(self) -> Optional[RefinedKB]:
        """The KB of the `refined_kb` component this component listens to (None before it has one)."""
        kb = self._kb_source.kb if self._kb_source is not None else None
        if kb is not None and kb is not self._kb_seen:
            self.kb_changed(kb)
            self._kb_seen = kb
        return kb

    def kb_changed(self, kb: RefinedKB) -> None:
        """Called with a KB this component has not used yet; raise KBError to refuse it."""

    def require_kb(self) -> RefinedKB:
        """The KB, or a KBError saying how to give the pipeline one."""
        if self._kb_source is None:
            raise KBError(
                f"[{self.name}] no KB component: add one before this component "
                f'(nlp.add_pipe("refined_kb", before="{self.name}")), or set `kb_component` to its name'
            )
        kb = self.kb
        return kb if kb is not None else self._kb_source.require_kb(self.name)
