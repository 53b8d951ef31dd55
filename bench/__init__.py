"""Benchmark suite: ``python -m bench [--quick] [--json FILE] [--only NAME,...]``.

Every section compares our code with a peer or a baseline inside the same run (the machine is shared and
noisy), reports medians of several repeats and a ratio, and says PASS or MISS against its target.
Results and how to reproduce them: docs/PERFORMANCE.md.
"""

# section name -> the module whose run(opts) measures it, in the order they run
MODULES = {
    "paint_to_mesh": "bench.sec_mesh",
    "generator_efficiency": "bench.sec_generator",
    "attention_memory": "bench.sec_attention",
    "obj_export": "bench.sec_obj",
    "tiled": "bench.sec_tiled",
    "cli_large": "bench.sec_cli",
    "train_step": "bench.sec_train",
    "erosion": "bench.sec_erosion",
}
SECTIONS = tuple(MODULES)
