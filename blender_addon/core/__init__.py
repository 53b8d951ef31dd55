"""The add-on's pure-Python half: no bpy here (tested without Blender), numpy + terrain_core only.

The Blender-facing half (``blender_addon.blender``) turns properties into the plain requests defined here,
hands them to these functions, and writes their numpy results into Blender data on the main thread.
"""
