"""The paper's vocabulary in one table: every treatment a cell can get, and how it is named,
trained, labelled and drawn. The plan, the config check, the records, the analysis, the figures
and the mapping of the original study's results all read this table; adding a treatment is one
row here (plus, if it needs one, its training rule in runner.build_cell_model).

A cell trains on a target task (A or B). Its first n layers come from its treatment's source:
- base         n = 0: trained from scratch (``baseB``)
- selffer      copied from the target's own base and frozen (``B3B``); ``selffer_ft``: all
               layers learn (``B3B+``)
- transfer     copied from the other task's base and frozen (``A3B``); ``transfer_ft`` (``A3B+``)
- random       left at their random initialisation and frozen (``R3B``; paper section 4.3)
- pretrained   copied from the network of model.weights (a pretrained checkpoint, no base of the
               sweep) and frozen (``P3B``); ``pretrained_ft``: all layers learn (``P3B+``)
Layers n+1..L are always freshly initialised.

Probes train no network: a linear classifier on the frozen, pooled unit-n activations of the
source (``B3B-probe``, ``A3B-probe``, ``P3B-probe``; estimates.py), the cheap estimate of the
frozen cell of the same source. ``probe`` in treatments=[...] names all of them (PnB-probe when
model.weights is set).
"""
from __future__ import annotations

from dataclasses import dataclass

# Where a treatment's layers 1..n come from.
SOURCES = (None, "own", "other", "random", "pretrained")


@dataclass(frozen=True)
class Treatment:
    name: str            # the config word: treatments=[selffer, transfer_ft]
    label: str           # the paper's label: BnB, AnB+
    source: str | None   # SOURCES: None (a base), "own" / "other" task's base, "random" init, "pretrained"
    finetune: bool       # layers 1..n learn too (the paper's "+")
    reference: str       # the word the original study's published CSV uses (pretrained: none there)
    legend: str          # legend text in the figures
    face: str            # marker fill, edge colour and shape: the paper's (Figure 2 caption)
    edge: str
    marker: str
    offset: float        # Figure 2's horizontal shift of its points, so treatments stand apart
    figure2: bool = True  # drawn in Figure 2 (the random-weights control is Figure 3's)
    probe: bool = False   # a linear probe on the source's unit-n features; no network is trained

    @property
    def style(self) -> dict:
        return {"face": self.face, "edge": self.edge, "marker": self.marker, "label": self.legend}


# In the plan's order. Colours: base white circles, BnB dark blue dots, BnB+ light blue, AnB dark
# red diamonds, AnB+ light red diamonds (section 4.2). The random-weights colour is not named in
# the text: purple squares. Pretrained sources (not in the paper): green triangles, right of AnB+.
TABLE = (
    Treatment("base", "base", None, False, "base", "base", "white", "black", "o", 0.0),
    Treatment("selffer", "BnB", "own", False, "selffer-frozen", "selffer BnB", "#14279b", "#14279b", "o", -0.21),
    Treatment("selffer_ft", "BnB+", "own", True, "selffer-finetuned", "selffer BnB$^+$", "#8fb4f2", "#4a72c4",
              "o", -0.07),
    Treatment("transfer", "AnB", "other", False, "transfer-frozen", "transfer AnB", "#a50f15", "#a50f15", "D", 0.07),
    Treatment("transfer_ft", "AnB+", "other", True, "transfer-finetuned", "transfer AnB$^+$", "#f7a39b",
              "#d0473f", "D", 0.21),
    Treatment("random", "random", "random", False, "random-frozen", "random weights, frozen", "#8e63c0",
              "#55308a", "s", 0.0, figure2=False),
    Treatment("pretrained", "PnB", "pretrained", False, "pretrained-frozen", "pretrained PnB", "#1b7837",
              "#1b7837", "^", 0.33),
    Treatment("pretrained_ft", "PnB+", "pretrained", True, "pretrained-finetuned", "pretrained PnB$^+$", "#a6dba0",
              "#4d9f54", "^", 0.43),
    # Probes: drawn in the estimates figure (analysis/estimates.py), dashed, in a pale tint of their source's colour.
    Treatment("selffer_probe", "BnB-probe", "own", False, "selffer-probe", "probe on baseB", "#dde5f8", "#14279b",
              "o", 0.0, figure2=False, probe=True),
    Treatment("transfer_probe", "AnB-probe", "other", False, "transfer-probe", "probe on baseA", "#f8dcd9",
              "#a50f15", "D", 0.0, figure2=False, probe=True),
    Treatment("pretrained_probe", "PnB-probe", "pretrained", False, "pretrained-probe", "probe on the pretrained net",
              "#d9efd6", "#1b7837", "^", 0.0, figure2=False, probe=True),
)
BY_NAME = {t.name: t for t in TABLE}
BY_LABEL = {t.label: t for t in TABLE}
CELLS = tuple(t.name for t in TABLE if t.source is not None)   # what treatments=[...] may list
LABELS = tuple(BY_NAME[t].label for t in CELLS)                 # the labels of the tables' rows
FIGURE2 = tuple(t.label for t in TABLE if t.figure2)
PROBES = tuple(t.name for t in TABLE if t.probe)
# Words of treatments=[...] that name several rows.
GROUPS = {"probe": PROBES}
WORDS = CELLS + tuple(GROUPS)


def expand(words, pretrained: bool = False) -> list[str]:
    """The treatments a list of config words asks for, in the plan's order; a group word brings
    its rows, less those with a pretrained source when there is no pretrained network
    (``pretrained``: model.weights is set)."""
    names = set()
    for w in words:
        for name in GROUPS.get(w, (w,)):
            if w not in GROUPS or pretrained or BY_NAME[name].source != "pretrained":
                names.add(name)
    return [t for t in CELLS if t in names]


def get(name: str) -> Treatment:
    """The treatment of a config word, or a ValueError naming the allowed ones."""
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"{name!r} is not a treatment; allowed: {', '.join(WORDS)}") from None
