#!/usr/bin/env python
"""Benchmark our trainer against the plain PyTorch loop: see ``python -m transferlab.bench --help``."""
import sys

from transferlab.bench import main

if __name__ == "__main__":
    sys.exit(main())
