"""Every config group's keys: one dataclass per group option, with types, choices and bounds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .. import treatments as T

SWITCH = ("auto", True, False)


def choice(*allowed, default=None):
    """A field whose value must be one of ``allowed``."""
    return field(default=default, metadata={"choices": allowed})


def num(default=None, *, ge=None, gt=None, lt=None, le=None, auto=False, factory=None):
    """A number (or, for a list, numbers) within bounds; ``auto`` also allows the word auto."""
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("lt", lt), ("le", le)) if v is not None}
    meta = {"bounds": bounds, "auto": auto}
    return field(default_factory=factory, metadata=meta) if factory else field(default=default, metadata=meta)


def count(default=1, auto=False):
    """An integer >= 1 (a number of things), or with ``auto`` the word auto."""
    return num(default, ge=1, auto=auto)


def sizes(ge=1):
    """A list of integers, each >= ``ge`` (channels, kernels, units)."""
    return num(ge=ge, factory=list)


# ----------------------------------------------------------------------------------- groups

@dataclass
class CropFlip:                # in-memory datasets: random crop of the padded image, mirror
    crop_padding: int = num(0, ge=0)  # pixels
    flip: bool = False


@dataclass
class ResizeCrop:              # image folders: resize x resize, random crop x crop, mirror
    resize: int = count(256, auto=True)   # pixels; auto: from the images (data/folder.py)
    crop: int = count(227, auto=True)
    flip: bool = True


@dataclass
class SyntheticData:
    name: str = "synthetic"
    seed: int = num(0, ge=0)
    num_superclasses: int = count(8)
    classes_per_superclass: int = count(4)
    train_per_class: int = count(200)
    val_per_class: int = count(60)
    image_size: int = count(16)  # pixels
    augment: CropFlip = field(default_factory=CropFlip)


@dataclass
class CifarData:
    name: str = "cifar10"
    root: str = "data"
    download: bool = False
    train_per_class: Optional[int] = count(None)   # null: all of them
    val_per_class: Optional[int] = count(None)
    image_size: int = choice(32, default=32)       # pixels
    augment: CropFlip = field(default_factory=CropFlip)


@dataclass
class FolderData:
    name: str = "imagefolder"
    root: Optional[str] = None
    train_dir: str = "train"
    val_dir: str = "val"
    hierarchy: Optional[str] = None
    train_per_class: Optional[int] = count(None)   # null: all of them
    val_per_class: Optional[int] = count(None)
    memory_gb: float = num(4.0, ge=0)   # decoded images held in memory up to this size; 0: from disk
    num_workers: int = num(4, ge=0)
    augment: ResizeCrop = field(default_factory=ResizeCrop)
    mean: List[float] = field(default_factory=list)   # 0..1 scale, per channel
    std: List[float] = num(gt=0, factory=list)
    image_size: int = count(227, auto=True)   # pixels: the crop (an interpolation in the yaml)


@dataclass
class Lrn:
    size: int = count(5)       # channels
    alpha: float = num(1e-4, ge=0)
    beta: float = num(0.75, ge=0)
    k: float = num(1.0, gt=0)


@dataclass
class CaffeNetModel:
    name: str = choice("caffenet", default="caffenet")
    input_size: int = count(16, auto=True)  # pixels; the data's image size (auto until read from the images)
    in_channels: int = count(3)
    conv_channels: List[int] = sizes()   # 5 each (models/caffenet.py checks the lengths)
    conv_kernels: List[int] = sizes()
    conv_strides: List[int] = sizes()
    conv_padding: List[int] = sizes(ge=0)
    conv_groups: List[int] = sizes()
    fc_units: List[int] = sizes()        # 2: fc6, fc7
    pool_kernel: int = count(3)
    pool_stride: int = count(2)
    lrn: Lrn = field(default_factory=Lrn)
    dropout: float = num(0.5, ge=0, lt=1)
    init: str = choice("kaiming", "gaussian", default="kaiming")
    weights: Optional[str] = None  # pretrained source: a state_dict file of this CaffeNet (models/pretrained.py)


@dataclass
class VggModel:                # torchvision's VGG, its weight layers the units
    name: str = choice("vgg11", "vgg16", default="vgg11")
    weights: Optional[str] = None  # pretrained source: a state_dict file or a torchvision weights name
    input_size: Optional[int] = count(None, auto=True)   # pixels; null: the data's image size
    dropout: float = num(0.5, ge=0, lt=1)


@dataclass
class ResNetModel:             # torchvision's ResNet: stem, residual blocks, head
    name: str = choice("resnet18", "resnet50", "resnet18_cifar", default="resnet18")
    weights: Optional[str] = None
    input_size: Optional[int] = count(None, auto=True)


@dataclass
class VitModel:                # torchvision's VisionTransformer: embedding, encoder blocks, head
    name: str = choice("vit_b_16", "vit_tiny", default="vit_tiny")
    weights: Optional[str] = None
    input_size: Optional[int] = count(None, auto=True)
    patch_size: int = count(4)   # pixels
    num_layers: int = count(6)   # encoder blocks
    num_heads: int = count(3)
    hidden_dim: int = count(192)
    mlp_dim: int = count(768)


@dataclass
class Split:
    name: str = choice("random", "dissimilar", default="random")
    seed: Any = 0              # an axis: 0, 0..3 or 0,2


@dataclass
class Train:
    epochs: int = num(30, gt=0)
    batch_size: int = num(64, gt=0)
    optimizer: str = choice("sgd", "adamw", default="sgd")
    lr: float = num(0.03, gt=0)
    momentum: float = num(0.9, ge=0)
    nesterov: bool = True
    weight_decay: float = num(5e-4, ge=0)
    bias_lr_mult: float = num(1.0, ge=0)
    bias_weight_decay: bool = True
    transfer_lr_mult: float = num(1.0, ge=0)      # copied units of fine-tuned cells; 0 freezes them
    layer_decay: float = num(1.0, gt=0, le=1)     # copied unit i of n: x layer_decay**(n - i)
    schedule: str = choice("cosine", "step", "constant", default="cosine")
    warmup_epochs: float = num(1, ge=0)
    step_every_epochs: float = num(0, ge=0)   # schedule=step needs it > 0 (config.validate)
    step_gamma: float = num(0.1, gt=0)
    label_smoothing: float = num(0.1, ge=0, lt=1)
    evals_per_epoch: int = count(2)
    threads: int = count(1)
    grad_clip: float = num(5.0, ge=0)     # max gradient norm; 0: no clipping
    precision: str = choice("auto", "fp32", "bf16", "fp16", default="auto")
    channels_last: Any = choice(*SWITCH, default="auto")
    cudnn_benchmark: Any = choice(*SWITCH, default="auto")
    compile: bool = False
    feature_cache: Any = choice(*SWITCH, "force", default="auto")


@dataclass
class LocalLauncher:
    name: str = "local"
    workers: int = count("auto", auto=True)


@dataclass
class SubmititLocalLauncher:
    name: str = "submitit_local"
    workers: int = count("auto", auto=True)
    timeout_min: float = num(10080, gt=0)
    signal_delay_s: int = num(60, ge=0)
    poll_s: float = num(10, gt=0)


@dataclass
class SlurmLauncher:
    name: str = "slurm"
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    exclude: Optional[str] = None
    comment: Optional[str] = None
    # hydra-submitit-launcher's names and units; null (and 0 GPUs): not passed to sbatch
    gres: Optional[str] = None                          # --gres, e.g. gpu:2 or gpu:a100:1
    gpus_per_node: Optional[int] = num(None, ge=0)      # --gpus-per-node
    gpus_per_task: Optional[int] = num(1, ge=0)         # --gpus-per-task
    cpus_per_task: Optional[int] = num(4, ge=1)         # --cpus-per-task
    cpus_per_gpu: Optional[int] = num(None, ge=1)       # --cpus-per-gpu (not with cpus_per_task)
    mem_gb: Optional[float] = num(None, gt=0)           # --mem, in GB (written 32GB, or in MB if fractional)
    mem_per_gpu: Optional[str] = None                   # --mem-per-gpu, verbatim: a size with its unit, e.g. 16G
    timeout_min: int = count(240)
    max_num_timeout: int = num(20, ge=0)
    signal_delay_s: int = num(120, ge=0)
    array_parallelism: int = count(64)
    setup: List[str] = field(default_factory=list)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    wait: bool = False
    poll_s: float = num(30, gt=0)


@dataclass
class Probe:                   # the probe cells (treatments=[probe]; estimates.py, probe.py)
    method: str = choice("ridge", "softmax", default="ridge")
    max_features: int = count(4096)     # per unit: conv maps average-pooled to k x k with C*k*k <= this
    l2: List[float] = num(gt=0, factory=lambda: [1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5])  # grid; the holdout picks
    holdout: float = num(0.2, gt=0, lt=1)   # fraction of the training images the grid is scored on
    max_iter: int = count(100)          # L-BFGS iterations per fit (softmax)
    batch_size: int = count(500)        # images per forward pass of the source network


@dataclass
class Root:
    name: Optional[str] = None
    results_dir: str = "results"
    n: Any = "1..7"            # axes: an int, a range a..b or a list (config.parse_axis)
    seed: Any = 0
    treatments: List[str] = field(default_factory=lambda: list(T.CELLS[:4]))
    directions: List[str] = field(default_factory=lambda: ["B"])
    device: str = "auto"       # auto | cpu | cuda | cuda:N (config.validate)
    dry_run: bool = False
    analyze: bool = True
    save_checkpoints: bool = True
    quiet: bool = False        # the console: warnings, errors and the results only (sweep.log keeps all)
    verbose: bool = False      # the console: debug lines too (every evaluation, the data pipeline's choices)
    logger: str = choice("none", "tensorboard", default="none")   # experiment tracking besides the records
    probe: Probe = field(default_factory=Probe)
    data: Any = None           # the groups: checked against the schema of the option chosen
    model: Any = None
    split: Any = None
    train: Any = None
    launcher: Any = None


# A group's schema by the ``name`` its option sets.
GROUP_SCHEMAS = {
    "data": {"synthetic": SyntheticData, "cifar10": CifarData, "cifar100": CifarData,
             "imagefolder": FolderData, "imagenet": FolderData},
    "model": {"caffenet": CaffeNetModel, "vgg11": VggModel, "vgg16": VggModel, "resnet18": ResNetModel,
              "resnet50": ResNetModel, "resnet18_cifar": ResNetModel, "vit_b_16": VitModel, "vit_tiny": VitModel},
    "launcher": {"local": LocalLauncher, "submitit_local": SubmititLocalLauncher, "slurm": SlurmLauncher},
}
FIXED_SCHEMAS = {"split": Split, "train": Train}
