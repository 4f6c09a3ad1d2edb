from .cli import run_quietly
from .sweep import main

run_quietly(main)  # `... | head -1` ends silently
