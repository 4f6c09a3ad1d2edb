"""Benchmark: how fast transferlab trains a sweep, measured side by side with the loops a user
would write instead. Every number is a run; nothing is estimated.

    python -m transferlab.bench                 # cells + the whole default sweep both ways (~15 min on 2 CPU cores)
    python -m transferlab.bench --quick         # cells only, one epoch each (~2 min)
    python -m transferlab.bench --repeat 3 --out bench.json

Cells: a base, a frozen cell (n=5) and a fine-tuned cell (n=5+) of the default network (16x16
synthetic data, no augmentation) and of the CIFAR-sized one (32x32, the CIFAR recipe's crop and
flip), each trained for the same steps by
- ours: ``train.train`` as a sweep runs it (data on the device, batched augmentation,
  channels_last, the frozen-prefix feature cache, fused SGD), here on all CPU threads;
- plain: the loop a user with in-memory tensors writes: ``DataLoader(TensorDataset(x, y),
  shuffle=True)``, the same network module, ``torch.optim.SGD`` with the same settings and
  schedule, frozen layers with ``requires_grad=False``, the same validation passes;
- plain, torch.nn layers: the same loop and a network built as a user builds it
  (``nn.LocalResponseNorm``, ``nn.Dropout``, ReLU before the max-pool, as Caffe has it);
- PIL: torchvision's recipe: PIL images through ``DataLoader(num_workers=2)`` and transforms.
Runs alternate and the fastest of ``--repeat`` counts, so a busy machine hurts every side alike.
Per cell: training images/s, the speed-up on the whole cell, the FLOPs of one training step as
our trainer runs it (``FlopCounterMode``), the FLOP/s achieved and its ratio to the device's
dense matmul peak measured in the same run (MFU).

An image folder: the embedded images written as 2,496 PNG files, the default network's base
cell trained from them decoded once into memory, from disk by DataLoader workers, and from the
embedded tensors, alternating (bench/folder.py).

The whole default sweep (2 bases + 4 treatments x 7 layers): ours is ``transferlab.sweep`` run
for real (its networks side by side, ``launcher.workers``); the plain loop trains the same plan
(same networks, epochs, evaluations, bases first and copied from) one network after another on
all threads. The ratio of the two wall times is the speed-up the README quotes.
"""
from __future__ import annotations

from .cells import CELLS, REFERENCES, Bench, our_cell, step_flops
from .cli import main, run
from .peak import matmul_peak
from .reference import reference_cell, torch_nn_network
from .sweeps import our_sweep, plain_sweep, sweeps_side_by_side

__all__ = ["CELLS", "REFERENCES", "Bench", "main", "matmul_peak", "our_cell", "our_sweep", "plain_sweep",
           "reference_cell", "run", "step_flops", "sweeps_side_by_side", "torch_nn_network"]
