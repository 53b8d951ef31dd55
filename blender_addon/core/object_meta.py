"""What a generated terrain object records about itself, the same for the panel's Generate, live previews
and the headless batch.

The record goes into the object's custom property (``blender.build.META_KEY``; the build adds the names of
the images it made) and, through Export, into meta.json. Regenerate and Variation read the seed and the map
image's name back from it, Export the height range and the map checksum.
"""

from __future__ import annotations

from .pipeline import GenerateOutcome, GenerateRequest


def object_metadata(
    req: GenerateRequest,
    outcome: GenerateOutcome,
    *,
    map_image: str = "",
    map_file: str = "",
    preview: bool = False,
) -> dict:
    """The record of one generated terrain: its request's settings, the model, the map it came from.

    ``map_image``: the Blender image painted (""; the batch reads files), ``map_file``: the map file read
    ("" for a painted map), ``preview``: a live preview (replaced by the next one, never exported).
    """
    return dict(
        seed=int(req.seed),
        model=outcome.model_name,
        model_path=req.model_path,
        untrained=bool(outcome.model_info.get("untrained", False)),
        map_checksum=outcome.checksum,
        map_image=map_image,
        map_file=map_file,
        resolution=int(req.resolution),
        mesh_resolution=int(req.mesh_resolution),
        size_m=float(req.size_m),
        height_min_m=float(req.height_min_m),
        height_max_m=float(req.height_max_m),
        preview=bool(preview),
        erosion=req.erosion,
    )
