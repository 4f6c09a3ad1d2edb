"""python -m transferlab.analysis: the command line (cli.main)."""
from ..cli import run_quietly
from .cli import main

run_quietly(main)  # `... | head -1` ends silently, as the sweep's --help and --cfg do
