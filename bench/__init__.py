"""Benchmark suite: ``python -m bench [--quick] [--json FILE] [--only NAME,...]``.

Every section compares our code with a peer or a baseline inside the same run (the machine is shared and
noisy), reports medians of several repeats and a ratio, and says PASS or MISS against its target.
Results and how to reproduce them: docs/PERFORMANCE.md.
"""

SECTIONS = (
    "paint_to_mesh",
    "generator_efficiency",
    "attention_memory",
    "obj_export",
    "tiled",
    "cli_large",
    "train_step",
    "erosion",
)
