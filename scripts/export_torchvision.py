#!/usr/bin/env python
"""A trained network of a sweep (a cell's model.pt, our unit key names) as a state_dict under
torchvision's own key names, loadable with ``torchvision.models.<model>(num_classes=K)`` and
usable as ``model.weights`` of another sweep. The architecture comes from the cell's record.

    python scripts/export_torchvision.py results/<sweep>/cells/random0_s0_baseB out.pth
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from transferlab.models import torchvision_nets as tv
from transferlab.models.units import UnitNet
from transferlab.store import load_state


def export(ours: dict, model_cfg) -> dict:
    """``ours`` (layers.<i>... keys) -> the same tensors under torchvision's key names."""
    if model_cfg.name not in tv.NAMES:
        raise SystemExit(f"model {model_cfg.name!r} is not a torchvision architecture; these are: {', '.join(tv.NAMES)}")
    heads = [v for k, v in ours.items() if k.endswith("weight") and v.dim() == 2]
    net = tv.construct(model_cfg, heads[-1].shape[0])  # the head's rows: the network's classes
    UnitNet(*tv.units(net, model_cfg.name)).load_state_dict(ours)  # strict: every tensor has its place
    return net.state_dict()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("cell", type=Path, help="a cell's folder (holding model.pt and record.json)")
    p.add_argument("out", type=Path, help="the .pth file to write")
    a = p.parse_args()
    record = json.loads((a.cell / "record.json").read_text())
    state = export(load_state(a.cell / "model.pt"), OmegaConf.create(record["config"]["model"]))
    torch.save(state, a.out)
    print(f"wrote {a.out}: {len(state)} tensors under torchvision's key names (e.g. {next(iter(state))}), "
          f"{record['config']['model']['name']} of {record['name']}")


if __name__ == "__main__":
    main()
