"""Training data: the public-layout loader, procedural world, Earth sources and segmentation pipeline.

Only ``dataset`` imports torch; the rest is numpy/scipy (and Pillow for files) so that the builder runs
without torch.
"""
