import signal
import sys

# Ctrl-C while Python loads torch (the first seconds): exit 130, not a traceback (as sweep.py run itself).
_loading = signal.getsignal(signal.SIGINT) is signal.default_int_handler
if _loading:
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

from .cli import run_quietly  # noqa: E402
from .sweep import main  # noqa: E402

if _loading:
    signal.signal(signal.SIGINT, signal.default_int_handler)
run_quietly(main)  # `... | head -1` ends silently
