"""--cfg job|all [--resolve] [-p KEY]: the composed config as YAML; all adds ``derived``."""
from __future__ import annotations

from omegaconf import OmegaConf

from ..config import ConfigError, compose, results_root
from .flags import Args
from .output import _text


def _derived(cfg) -> dict:
    """What the run would use that the config leaves open; no image is read."""
    from ..train import resolve_device, resolved_arithmetic

    return {"sweep_folder": str(results_root(cfg)), **resolved_arithmetic(cfg, resolve_device(cfg.device))}


def _select(node, key: str):
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            top = ", ".join(node) if isinstance(node, dict) else "none: it is a value"
            raise ConfigError(f"-p {key}: {part!r} is not a key there; the keys there: {top}")
        node = node[part]
    return node


def cfg_text(args: Args, overrides: list[str]) -> str:
    """--cfg: the composed config as YAML; all: resolved, plus ``derived``."""
    cfg = compose(overrides)
    node = OmegaConf.to_container(cfg, resolve=args.resolve or args.cfg == "all")
    if args.cfg == "all":
        node["derived"] = _derived(cfg)
    if args.package:
        node = _select(node, args.package)
    return OmegaConf.to_yaml(node).rstrip("\n") if isinstance(node, (dict, list)) else _text(node)
