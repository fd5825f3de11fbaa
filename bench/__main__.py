"""``python -m bench``: the ``bench`` command, also as ``accelerate launch -m bench run ...``."""
from bench.cli import main

main()
