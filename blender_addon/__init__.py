"""Terrain GAN for Blender: paint a 7-class terrain map on a plane, generate a textured terrain mesh.

Two halves, as glTF-Blender-IO splits io/ from blender/: ``core`` is pure Python + numpy (tested without
Blender) and ``blender`` holds the operators, panels and properties. bpy is imported only when Blender
registers the add-on, so ``blender_addon.core`` stays importable anywhere.
"""


def register():
    from .blender import register as _register

    _register()


def unregister():
    from .blender import unregister as _unregister

    _unregister()
