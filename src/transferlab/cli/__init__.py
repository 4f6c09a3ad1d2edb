"""The sweep's command line around the overrides: the flags Hydra users expect (--help [GROUP],
--cfg job|all, --resolve, -p KEY, -m), Hydra's hydra.* keys mapped onto ours, and multirun as
one sweep per combination of comma-separated values.

transferlab composes its config with Hydra's compose API (config.py says why), so none of
@hydra.main's flags or hydra.* keys exist unless this package gives them: ``handle`` takes them
off the command line and hands sweep.main plain overrides.

    flags      parse_flags (Args), map_hydra_keys: the flags and the hydra.* keys
    multirun   expand, name_jobs and the checks and runs of -m's sweeps
    output     emit, silence_stdout, run_quietly: a closed pipe ends quietly
    help       general_help, group_help (with the config files' comments)
    cfg        cfg_text: --cfg job|all, -p, --resolve
    entry      handle: all of it, for sweep.main
"""
from .entry import handle
from .flags import ALLOWED_FLAGS, map_hydra_keys
from .help import MAIN_TRAIN, _flat
from .output import _text, run_quietly

__all__ = ["ALLOWED_FLAGS", "MAIN_TRAIN", "_flat", "_text", "handle", "map_hydra_keys", "run_quietly"]
