"""The loops a user would write instead of ours: DataLoader(TensorDataset) over in-memory tensors,
the same with torch.nn's own layers, and PIL images through torchvision's transforms."""
from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageSet
from ..models.dropout import Dropout
from ..models.lrn import LocalResponseNorm
from ..train import _autocast, eval_steps, lr_at
from .peak import _sync


def torch_nn_network(model: nn.Module) -> nn.Module:
    """A copy of ``model`` built from torch.nn's own layers, in Caffe's order: ReLU before the
    max-pool, ``nn.LocalResponseNorm``, ``nn.Dropout``. Same weights, same function."""
    m = copy.deepcopy(model)
    for i, block in enumerate(m.layers):
        mods = list(block)
        pool = [j for j, x in enumerate(mods) if isinstance(x, nn.MaxPool2d)]
        relu = [j for j, x in enumerate(mods) if isinstance(x, nn.ReLU)]
        if pool and relu and relu[0] == pool[0] + 1:
            mods[pool[0]], mods[relu[0]] = mods[relu[0]], mods[pool[0]]
        mods = [nn.LocalResponseNorm(x.size, x.alpha, x.beta, x.k) if isinstance(x, LocalResponseNorm)
                else nn.Dropout(x.p) if isinstance(x, Dropout) else x for x in mods]
        m.layers[i] = nn.Sequential(*mods)
    return m


class PILImages(torch.utils.data.Dataset):
    """An ImageSet served as PIL images, as torchvision's datasets serve them."""

    def __init__(self, s: ImageSet, transform):
        from PIL import Image

        self.images = [Image.fromarray(a) for a in s.x.permute(0, 2, 3, 1).numpy()]
        self.labels = s.y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def reference_transforms(cfg, mean, std, train: bool):
    """Compose([RandomCrop(pad), RandomHorizontalFlip(), ToTensor(), Normalize()]), keeping the
    augmentations our config uses (the default synthetic recipe uses none)."""
    from torchvision import transforms as T

    aug = cfg.data.get("augment") or {}
    steps = []
    if train and aug.get("crop_padding"):
        steps.append(T.RandomCrop(cfg.model.input_size, padding=int(aug.crop_padding)))
    if train and aug.get("flip"):
        steps.append(T.RandomHorizontalFlip())
    return T.Compose(steps + [T.ToTensor(), T.Normalize(mean, std)])


def _tensor_loaders(task, cfg, mean, std, pin: bool):
    from torch.utils.data import DataLoader, TensorDataset

    def normalised(s):
        m, sd = torch.tensor(mean).view(1, -1, 1, 1), torch.tensor(std).view(1, -1, 1, 1)
        return (s.x.float() / 255 - m) / sd

    B = int(cfg.train.batch_size)
    train = DataLoader(TensorDataset(normalised(task.train), task.train.y), batch_size=B, shuffle=True,
                       drop_last=True, pin_memory=pin)
    val = DataLoader(TensorDataset(normalised(task.val), task.val.y), batch_size=1000, pin_memory=pin)
    return train, val


def _pil_loaders(task, cfg, mean, std, pin: bool):
    from torch.utils.data import DataLoader

    B = int(cfg.train.batch_size)
    train = DataLoader(PILImages(task.train, reference_transforms(cfg, mean, std, True)), batch_size=B,
                       shuffle=True, num_workers=2, drop_last=True, pin_memory=pin)
    val = DataLoader(PILImages(task.val, reference_transforms(cfg, mean, std, False)), batch_size=1000,
                     num_workers=2, pin_memory=pin)
    return train, val


def reference_cell(model, task, cfg, mean, std, device: torch.device, epochs: int, kind: str = "plain") -> dict:
    """Train ``model`` (frozen layers have requires_grad=False) with a plain loop: the network,
    optimiser, schedule, label smoothing, gradient clipping and evaluations of ``cfg.train``;
    data from in-memory tensors (plain) or PIL images (PIL)."""
    t = cfg.train
    pin = device.type == "cuda"
    train_loader, val_loader = (_pil_loaders if kind == "PIL" else _tensor_loaders)(task, cfg, mean, std, pin)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay,
                          nesterov=bool(t.nesterov) and t.momentum > 0)
    autocast = lambda: _autocast(device, t.precision)[0]  # noqa: E731
    steps_per_epoch = len(train_loader)
    evals = set(eval_steps(steps_per_epoch, t.get("evals_per_epoch", 1)))
    step, train_time, t0, top1 = 0, 0.0, time.perf_counter(), 0.0
    for _ in range(epochs):
        model.train()
        t1 = time.perf_counter()
        for b, (x, y) in enumerate(train_loader, 1):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps_per_epoch * epochs, steps_per_epoch, t)
            x, y = x.to(device, non_blocking=pin), y.to(device, non_blocking=pin)
            with autocast():
                loss = F.cross_entropy(model(x).float(), y, label_smoothing=t.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            opt.step()
            step += 1
            if b in evals:
                _sync(device)
                train_time += time.perf_counter() - t1
                model.eval()
                correct = 0
                with torch.no_grad(), autocast():
                    for xv, yv in val_loader:
                        correct += (model(xv.to(device)).argmax(1) == yv.to(device)).sum().item()
                top1 = correct / len(task.val)
                model.train()
                t1 = time.perf_counter()
        _sync(device)
        train_time += time.perf_counter() - t1
    return {"wall": time.perf_counter() - t0, "step_time": train_time, "steps": step, "val_top1": top1}
