"""PyTorch modules inside thinc models: shims that serialize without pickle.

A module that can be rebuilt from its constructor arguments registers its
class with `@serializable` and keeps those arguments in `module.config`.
The shim stores that config (msgpack) and the weights (safetensors), so a
model can be deserialized before anyone knows its sizes, and loading a
pipeline never unpickles anything.
"""

from typing import Any, Dict, Optional, Type, TypeVar

import srsly
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from thinc.api import PyTorchShim

_MODULES: Dict[str, Type[torch.nn.Module]] = {}
ModuleT = TypeVar("ModuleT", bound=Type[torch.nn.Module])


def serializable(cls: ModuleT) -> ModuleT:
    """Class decorator: let shims rebuild this module from `module.config`."""
    _MODULES[cls.__name__] = cls
    return cls


def serialize_module(module: Optional[torch.nn.Module]) -> bytes:
    """A `@serializable` module's class name, config and weights (empty: no module yet)."""
    if module is None:
        return b""
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in module.state_dict().items()}
    return srsly.msgpack_dumps({"class": type(module).__name__, "config": module.config, "state": save_tensors(state)})


def deserialize_module(
    module: Optional[torch.nn.Module], data: bytes, device: torch.device
) -> Optional[torch.nn.Module]:
    """Rebuild a module from `serialize_module`'s bytes, on `device` (empty: keep `module`)."""
    if not data:
        return module
    msg = srsly.msgpack_loads(data)
    cls = _MODULES.get(msg["class"])
    if cls is None:
        raise ValueError(f"cannot deserialize unknown PyTorch module {msg['class']!r}")
    module = cls(**msg["config"])
    try:
        module.load_state_dict(load_tensors(msg["state"]))
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise ValueError(
            f"the saved {msg['class']} weights do not fit this version of spacy-refined's model "
            f"(saved by another version? retrain or install the version that trained it): {first}"
        ) from None
    return module.to(device)


def torch_shim(module: Optional[torch.nn.Module] = None) -> PyTorchShim:
    """A `PyTorchShim` for `module` (None: a placeholder filled at initialization)."""
    return PyTorchShim(module, serialize_model=serialize_module, deserialize_model=deserialize_module)


def wrapped_module(model: Any) -> torch.nn.Module:
    """The PyTorch module of a thinc model's (first) shim; error if not yet initialized."""
    module = model.shims[0]._model
    if module is None:
        raise ValueError(f"model '{model.name}' is not initialized: call nlp.initialize() or load a trained pipeline")
    return module


def shim_device(model: Any) -> torch.device:
    """The device of a thinc model's (first) PyTorch module."""
    return next(wrapped_module(model).parameters()).device
