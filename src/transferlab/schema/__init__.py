"""The config schema: every key of every config group, its type and, where it has them, its
allowed values or bounds, in one screen per group.

``check(cfg)`` runs on every composed config (config.compose), before anything is planned,
trained or written: an unknown key is refused with a did-you-mean (``+epochs=3`` too, which
Hydra would accept and nothing would read), a value of the wrong type, outside its choices or
out of its bounds is refused naming the key and what is allowed. What a schema cannot say (n
within 1..L-1 of the model, one key against another, the model's shapes, the input size
against the data) is config.validate's.

We check the composed config against these dataclasses ourselves instead of merging it into
OmegaConf structured configs: that would turn enum values into Enum objects in every record
(changing what records and sweep.json hold) and its messages name neither the value nor the
allowed ones.
"""
from __future__ import annotations

from .check import ConfigError, check, check_group, did_you_mean, known_keys, not_a_key
from .groups import FIXED_SCHEMAS, GROUP_SCHEMAS, SWITCH, Root, choice, count, num, sizes

__all__ = ["FIXED_SCHEMAS", "GROUP_SCHEMAS", "SWITCH", "ConfigError", "Root", "check", "check_group",
           "choice", "count", "did_you_mean", "known_keys", "not_a_key", "num", "sizes"]
