"""Model names (timm style): which names exist and the config each one stands for.

    list_models("vgg16*")              the paper variants + saved (ZOO_HOME) + remote names
                                       + reference models ("dlib-resnet")
    config_for_name("vgg16-ecloss")    the config a name stands for
    register_remote(name, url, sha256) make ``zoo.load(name)`` fetch published weights

A name is a paper model (zoo.config.PAPER_MODELS), a model saved in ZOO_HOME (zoo.hub), published
weights registered here (``REMOTE``) or a reference model whose weights come from an installed
package (zoo.reference_config.REFERENCE_MODELS: "dlib-resnet"). A saved model wins over a remote
entry, which wins over the paper config. Building a network from a name is zoo.builder's job;
storing, reading and downloading the files zoo.hub's.
"""
from __future__ import annotations

import copy
import fnmatch
from typing import Any, Dict, List, Mapping, Optional

from . import hub
from .config import PAPER_MODELS, default_config, load_config
from .reference_config import REFERENCE_MODELS

__all__ = ["REMOTE", "known_names", "list_models", "unknown_name_error", "config_for_name",
           "register_remote"]

# Published weights: name -> {"url", "sha256", "config"}. Empty until weights are published;
# register_remote() adds entries at run time (see docs/registry.md).
REMOTE: Dict[str, Dict[str, Any]] = {}


def known_names(local: Optional[Mapping[str, object]] = None) -> List[str]:
    """Every name, sorted: paper models, reference models, remote entries and saved models
    (``local``: hub.local_models() when the caller has it already)."""
    saved = hub.local_models() if local is None else local
    return sorted(set(PAPER_MODELS) | set(REFERENCE_MODELS) | set(REMOTE) | set(saved))


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Sorted names: the six paper variants, the reference models ("dlib-resnet", weights from
    an installed package), registered remote weights and local models
    (folders in ZOO_HOME with config.json + model.safetensors); ``pattern`` is an fnmatch
    pattern ("vgg16*")."""
    names = known_names()
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def unknown_name_error(name: str) -> ValueError:
    """The error for a name that is none of the known ones (they are listed)."""
    return ValueError(f"unknown model {name!r}; known models: {', '.join(known_names())} "
                      f"(ZOO_HOME={hub.zoo_home()})")


def config_for_name(name: str) -> Dict[str, Any]:
    """The resolved config ``name`` stands for: a saved model's config.json, else the remote
    entry's config, else the paper config; ValueError listing the known names otherwise."""
    local = hub.local_models()
    if name in local:
        return load_config(local[name] / hub.CONFIG_FILE)
    if name in REMOTE:
        return copy.deepcopy(REMOTE[name]["config"])
    if name in PAPER_MODELS or name in REFERENCE_MODELS:
        return default_config(name)
    raise unknown_name_error(name)


def register_remote(name: str, url: str, sha256: str,
                    config: Optional[Dict[str, Any]] = None) -> None:
    """Make ``load(name)`` fetch ``url`` (checked against ``sha256``) into the cache.
    ``config`` defaults to the paper config of ``name`` (which must then be a paper name)."""
    sha256 = hub.check_sha256(sha256)
    if not hub.is_url(url):
        raise ValueError(f"not an http(s)/file url: {url!r}")
    if config is None:
        if name not in PAPER_MODELS:
            raise ValueError(f"{name!r} is not a paper model: pass config= for its architecture")
        cfg = default_config(name)
    else:
        cfg = default_config(dict(config), name=name)
    REMOTE[name] = {"url": url, "sha256": sha256, "config": cfg}
