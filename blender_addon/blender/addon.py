"""Which add-on this is and its preferences: a leaf module (imports only bpy).

Kept apart from ``props.py`` because the operators read the preferences while ``props.py`` reaches the
live-mode code through its update callback; taking ``preferences`` from ``props`` closed an import circle
(generate -> props -> live -> generate).
"""

from __future__ import annotations

import bpy


def addon_package() -> str:
    """The add-on's module name: 'blender_addon' from source, 'bl_ext.<repo>.terrain_gan' as an extension."""
    return __package__.rpartition(".")[0]


def preferences():
    """The add-on preferences, or None when the classes were registered without enabling the add-on
    (tests, the batch script): callers then use the defaults of ``TERRAIN_AddonPreferences``."""
    addon = bpy.context.preferences.addons.get(addon_package())
    return addon.preferences if addon else None
