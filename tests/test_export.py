"""scripts/export_torchvision.py: a cell's network under torchvision's key names computes what it did."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from transferlab.config import compose
from transferlab.models import build_model
from transferlab.models import torchvision_nets as tv

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_torchvision.py"


def _script():
    spec = importlib.util.spec_from_file_location("export_torchvision", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("arch, size", [("resnet18_cifar", 16), ("vit_tiny", 16), ("vgg11", 32)])
def test_export_loads_strictly_into_torchvision_and_computes_the_same(tmp_path, monkeypatch, arch, size):
    cfg = compose([f"model={arch}", f"data.image_size={size}"])
    model_cfg = OmegaConf.create(OmegaConf.to_container(cfg.model, resolve=True))
    ours = build_model(model_cfg, 7, generator=torch.Generator().manual_seed(0)).eval()
    cell = tmp_path / "cell"
    cell.mkdir()
    torch.save(ours.state_dict(), cell / "model.pt")
    (cell / "record.json").write_text(json.dumps({"name": "baseB", "config": {"model": OmegaConf.to_container(model_cfg)}}))
    monkeypatch.setattr("sys.argv", ["export_torchvision.py", str(cell), str(tmp_path / "out.pth")])
    _script().main()
    state = torch.load(tmp_path / "out.pth", weights_only=True)
    net = tv.construct(model_cfg, 7)
    net.load_state_dict(state)  # strict: torchvision's own key names, nothing missing or left over
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(net.eval()(x), ours(x))


def test_a_caffenet_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="not a torchvision architecture"):
        _script().export({}, compose([]).model)
