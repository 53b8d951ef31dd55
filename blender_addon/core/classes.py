"""The terrain classes as Blender enum items, for every property that picks a class, and back to ids.

Pure Python (no bpy), so the panel settings (``blender/props.py``) and the paint tools
(``blender/paint.py``) both take it from here and neither has to import the other for it.
"""

from __future__ import annotations

from terrain_core.labels import CLASSES

# (identifier, UI name, tooltip, number): the number is the class id, so an enum's value maps to the label.
CLASS_ITEMS = [(c.name.upper(), c.name.capitalize(), c.description, c.id) for c in CLASSES]


def class_id(identifier: str) -> int:
    """The class id of an enum identifier of ``CLASS_ITEMS`` ("WATER" -> 0)."""
    return next(c.id for c in CLASSES if c.name.upper() == identifier)
