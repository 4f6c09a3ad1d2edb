"""--help [GROUP[=OPTION]]: usage, groups, keys with their composed values and their config
files' comments, flags and examples."""
from __future__ import annotations

import difflib
import itertools
import re
import textwrap
from pathlib import Path

from omegaconf import OmegaConf

from ..config import GROUPS, ConfigError, compose, config_dir, group_options
from .flags import HYDRA_KEYS, PROG, TOPICS, USAGE, _key
from .output import _text

# The train.* keys the general help shows; every one: --help train.
MAIN_TRAIN = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule",
              "warmup_epochs", "label_smoothing", "transfer_lr_mult", "precision", "threads")
# Words for keys whose config file says nothing about them.
HINTS = {"results_dir": "the folder holding every sweep folder", "save_checkpoints": "keep each network's weights",
         "split.seed": "the class split's seed(s): an axis like seed", "epochs": "passes over the training images",
         "batch_size": "images per step", "lr": "the peak learning rate", "momentum": "SGD's momentum",
         "weight_decay": "L2 penalty", "label_smoothing": "of the one-hot targets"}
EXAMPLES = (f"{PROG} --help train=cifar             # the train group's keys with train=cifar\n"
            f"{PROG} --cfg job -p train             # the composed train config\n"
            f"{PROG} -m train.lr=0.01,0.001 dry_run=true   # one sweep per learning rate")


def yaml_comments(path: Path) -> dict[str, str]:
    """{dotted key: its comment} of a config file: the comment on the key's line, else the
    block of comment lines just above it (indented comment lines continue a line's comment)."""
    out, above, stack, last = {}, [], [], ""
    lines = Path(path).read_text().splitlines()
    for line in lines[len(_header(lines)):]:  # the opening comments are the file's, not its first key's
        text = line.strip()
        m = re.match(r"(\s*)([A-Za-z_]\w*):(?:\s|$)(.*)", line)
        if text.startswith("#"):
            if not line[0].isspace():
                above.append(text.lstrip("#").strip())
            elif last in out:  # an indented comment line continues the line's comment above it
                out[last] += " " + text.lstrip("#").strip()
            continue
        if not m:
            above = []
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        desc, last = m.group(3).partition("#")[2].strip() or " ".join(above), ".".join(k for _, k in stack)
        if desc:
            out[last] = desc
        above = []
    return out


def _short(desc: str, width: int = 90) -> str:
    """A comment, or where longer than ``width`` its first sentence, shortened to ``width``."""
    first = desc if len(desc) <= width else re.split(r"(?<=\.)\s", desc, maxsplit=1)[0]
    return textwrap.shorten(first, width, placeholder=" ...")


def _header(lines: list[str]) -> list[str]:
    """The comment lines a config file opens with."""
    return list(itertools.takewhile(lambda line: line.startswith("#"), lines))


def _option_file(group: str, option: str) -> Path:
    return config_dir() / group / f"{option}.yaml"


def chosen_options(overrides: list[str]) -> dict[str, str | None]:
    """Each group's option: config.yaml's defaults, an experiment's, then the command line's."""
    options: dict[str, str | None] = {}
    for entry in OmegaConf.load(config_dir() / "config.yaml").defaults:
        if not isinstance(entry, str):
            options.update({k.split()[-1]: v for k, v in entry.items()})
    given = {_key(ov): ov.partition("=")[2] for ov in overrides if _key(ov) in GROUPS}
    if given.get("experiment") in group_options("experiment"):
        for entry in OmegaConf.load(_option_file("experiment", given["experiment"])).get("defaults", []):
            if not isinstance(entry, str):
                options.update({k.split("/")[-1]: v for k, v in entry.items()})
    return {**options, **given}


def _option_comments(group: str, option: str) -> dict[str, str]:
    """An option's key comments, with those of the options it inherits from (its defaults)."""
    path = _option_file(group, option)
    out = {}
    for entry in OmegaConf.load(path).get("defaults", []):
        if isinstance(entry, str) and entry != "_self_" and _option_file(group, entry).is_file():
            out.update(_option_comments(group, entry))
    return {**out, **yaml_comments(path)}


def _row(key: str, value, desc: str = "") -> str:
    kv = f"{key}={_text(value)}"
    return f"  {kv:<34} {desc}".rstrip() if len(kv) <= 34 else f"  {kv}  {desc}".rstrip()


def _groups_section(chosen: dict, defaults: dict) -> list[str]:
    lines = ["Config groups (group=option; --help GROUP lists a group's keys):"]
    for g in GROUPS:
        words = [o + (" (default)" if o == defaults.get(g) else " (chosen)" if o == chosen.get(g) else "")
                 for o in group_options(g)]
        tail = " (presets of several groups and keys; none by default)" if g == "experiment" else ""
        lines += textwrap.wrap(f"{', '.join(words)}{tail}", 100, initial_indent=f"  {g:<11} ",
                               subsequent_indent=" " * 14, break_on_hyphens=False)
    return lines


def _keys_section(cfg, chosen: dict) -> list[str]:
    comments = yaml_comments(config_dir() / "config.yaml")
    lines = ["", "Keys (key=value, as composed; n, seed and split.seed are the grid: 1..7 and 1,3,5 run every value):"]
    for k, v in cfg.items():
        if k in GROUPS:
            continue
        if OmegaConf.is_dict(v):
            lines.append(f"  {k + '.*':<34} {_short(comments.get(k, ''))} (--help {k})")
            continue
        lines.append(_row(k, OmegaConf.to_container(v) if OmegaConf.is_list(v) else v,
                          _short(comments.get(k, HINTS.get(k, "")))))
        if k == "seed":
            lines.append(_row("split.seed", cfg.split.seed, HINTS["split.seed"]))
    option = chosen.get("train")
    train_comments = _option_comments("train", option)
    lines += ["", f"Training (train={option}; every key: --help train):"]
    lines += [_row(f"train.{k}", cfg.train[k], _short(train_comments.get(k, HINTS.get(k, ""))))
              for k in MAIN_TRAIN if k in cfg.train]
    return lines


def _flags_section() -> list[str]:
    return ["", "Flags:",
            "  -h, --help [GROUP[=OPTION]]  this help; with a group (" + ", ".join(TOPICS) + "), its keys",
            "  --cfg, -c [job|all]          print the composed config and stop; all: resolved, plus the derived",
            "                               sweep folder, device and precision",
            "  --resolve                    with --cfg: resolve ${...} interpolations",
            "  -p, --package KEY            with --cfg: only KEY, e.g. -p train or -p train.lr",
            "  -m, --multirun               one sweep per combination of comma-separated values of other keys or",
            "                               groups (train.lr=0.01,0.001 model=vgg11,resnet18; range(), choice(),",
            "                               glob()), one after another, each in its folder <name>-key=value",
            "", "Hydra's keys (hydra.*), mapped onto transferlab's; any other is refused:",
            *[f"  {k + '=' + arg:<28} {words}" for k, (arg, words) in HYDRA_KEYS.items()]]


def general_help(doc: str, overrides: list[str]) -> str:
    """Usage, groups, keys with their values, flags and examples; the values are the composed
    config's (with the overrides given), so they never go stale."""
    cfg = compose(overrides)
    chosen, defaults = chosen_options(overrides), chosen_options([])
    paragraphs = [p.strip("\n") for p in (doc or "").split("\n\n")]
    examples = [line.strip() for line in paragraphs[1].splitlines()] if len(paragraphs) > 1 else []
    lines = [USAGE, "", paragraphs[0].strip(), "", *_groups_section(chosen, defaults), *_keys_section(cfg, chosen),
             *_flags_section(), "", "Examples:", *[f"  {e}" for e in (*examples, *EXAMPLES.splitlines())]]
    if len(paragraphs) > 2:
        lines += ["", *[line.strip() for line in paragraphs[2].splitlines()]]
    return "\n".join(lines)


def _flat(node, prefix: str) -> list[tuple[str, object]]:
    if isinstance(node, dict) and node:
        return [kv for k, v in node.items() for kv in _flat(v, f"{prefix}.{k}")]
    return [(prefix, node)]


def group_help(topic: str, overrides: list[str]) -> str:
    """--help GROUP[=OPTION]: the option's description and every key with its value."""
    group = topic.partition("=")[0]
    if group not in TOPICS:
        close = difflib.get_close_matches(group, TOPICS, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"--help {topic}: {group!r} is not a config group{hint}; choose one of: {', '.join(TOPICS)}")
    cfg, chosen, default = compose(overrides), chosen_options(overrides), chosen_options([])
    if group == "probe":
        comments = yaml_comments(config_dir() / "config.yaml")
        head = [f"probe (in config.yaml): {_short(comments['probe'])}"]
    else:
        option = chosen.get(group)
        options = ", ".join(o + (" (default)" if o == default.get(group) else "") for o in group_options(group))
        if option is None:
            return f"{group}: options {options}; none chosen. --help {group}=OPTION shows one."
        opening = _header(_option_file(group, option).read_text().splitlines())
        head = [f"{group}={option} (options: {options})",
                *[f"  {h.lstrip('#').strip()}" for h in opening if not h.startswith("# @package")]]
        if group == "experiment":  # a preset sets keys anywhere: its file says it best
            body = [line for line in _option_file(group, option).read_text().splitlines() if not line.startswith("#")]
            return "\n".join([*head, "", *body]).rstrip()
        comments = {f"{group}.{k}": v for k, v in _option_comments(group, option).items()}
    node = OmegaConf.to_container(cfg[group], resolve=False)
    rows = [_row(k, v, _short(comments.get(k, HINTS.get(k.rsplit(".", 1)[-1], "")))) for k, v in _flat(node, group)]
    return "\n".join([*head, "", f"Keys ({group}.KEY=VALUE):", *rows])
