"""How long a sweep's networks will take, before any is trained: ``dry_run=true`` prints it per
network and for the sweep, and ``launcher=slurm`` warns with it when ``launcher.timeout_min`` is
shorter than a network's estimate.

Each planned network's wall time comes from, best first:

1. **finished records** in the sweep folder (same recipe: sweep.json sees to that) of the same
   kind of network: the same work (a base and every fine-tuned cell train the whole network; a
   frozen cell of n trains above its n frozen units, whatever their source; a probe of unit n)
   on a task of the same size. The median of their wall times (a resumed record's train_time,
   which spans its attempts), its epochs scaled to the recipe's where they differ.
2. **a short measured burst** of its network shape on this device, once per distinct shape
   (frozen units, classes): the network built as a cell builds it (models.build_model,
   freeze_layers, the trainer's optimiser, precision and speed switches), a few training steps
   after a warm-up on random tensors of the input and batch size, one forward pass of an
   evaluation chunk, one checkpoint written. A frozen cell whose feature cache applies
   (features.py: in-memory images without random crops or flips) costs one forward pass of its
   frozen prefix over the task's images, then epochs x steps of the layers above it; every other
   network epochs x steps of the whole network; both evaluate train.evals_per_epoch times an
   epoch and checkpoint every epoch. A probe costs a fit (its arithmetic at this device's
   measured matmul rate) and, for the first probe of a source in a process (every probe under
   Slurm), one forward pass of the source's units over the task's images (estimates.py shares it).
   On one CPU thread a burst counts the thread's CPU time, not the wall, so what else the machine
   runs does not enter it; two rounds over the shapes, each part at its faster round. Then the
   networks' times are scaled for sharing the cores (contention(): launcher.workers x
   train.threads threads beside the machine's 1-minute load average).

No image is read: the task sizes come from the dataset's config (images per class; an image
folder's files are counted, not opened). The sweep's time lays the networks out as the
launcher runs them (launcher=local: launcher.workers side by side, bases first; slurm: the bases'
array, then the cells' array, array_parallelism tasks at once, queue waits not counted).
Loading the data and drawing the figures come on top. It is an estimate: a load on the machine
that changes while the sweep runs, a network that collapses and stops early, or compute nodes
unlike the submitting machine make it wrong; finished records are the better basis.
"""
from __future__ import annotations

from . import bursts, sweep_time, work
from .bursts import burst, burst_seconds
from .sweep_time import (Network, SweepEstimate, estimate, layout, report, timeout_warning,
                         warn_timeout)
from .work import TaskSize, cache_applies, record_seconds, task_size, work_of

__all__ = ["Network", "SweepEstimate", "TaskSize", "burst", "burst_seconds", "bursts", "cache_applies",
           "estimate", "layout", "record_seconds", "report", "sweep_time", "task_size", "timeout_warning",
           "warn_timeout", "work", "work_of"]
