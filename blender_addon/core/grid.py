"""Grid meshes as flat numpy arrays in the layout of Blender's attribute API (no bpy here).

A height map [H, W] (row 0 = north) becomes an ny x nx vertex grid centred on the origin: x east, y north,
z up. Vertices sit on the map's pixel centres (so the texture's pixel centres line up with the heights),
and the mesh resolution is independent of the generation resolution: heights are resampled bilinearly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_MESH_SIDE = 4096  # 16.8 M vertices: beyond this the mesh, not the generator, is the problem


@dataclass(frozen=True)
class GridArrays:
    """Everything ``Mesh`` needs, flat and typed for ``foreach_set``."""

    nx: int  # vertices per row (west to east)
    ny: int  # rows (north to south)
    positions: np.ndarray  # [nx * ny * 3] float32 vertex positions
    edge_verts: np.ndarray  # [E * 2] int32 vertex pairs
    corner_vert: np.ndarray  # [4 * F] int32 vertex of each face corner
    corner_edge: np.ndarray  # [4 * F] int32 edge from each corner to the next
    loop_start: np.ndarray  # [F] int32 first corner of each face
    uv: np.ndarray  # [4 * F * 2] float32 per-corner UVs

    @property
    def num_vertices(self) -> int:
        return self.nx * self.ny

    @property
    def num_faces(self) -> int:
        return (self.nx - 1) * (self.ny - 1)

    @property
    def num_edges(self) -> int:
        return self.edge_verts.size // 2


def resample_bilinear(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resample of [H, W] or [H, W, C] with pixel centres mapped onto pixel centres (edges kept)."""
    a = np.asarray(img, dtype=np.float32)
    h, w = a.shape[:2]
    if (h, w) == (height, width):
        return a

    def axis(n_in: int, n_out: int):
        if n_out == 1 or n_in == 1:
            t = np.full(n_out, (n_in - 1) / 2.0)
        else:
            t = np.linspace(0.0, n_in - 1.0, n_out)
        i0 = np.clip(np.floor(t).astype(np.int64), 0, max(n_in - 2, 0))
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, (t - i0).astype(np.float32)

    y0, y1, fy = axis(h, height)
    x0, x1, fx = axis(w, width)
    if a.ndim == 3:
        fy, fx = fy[:, None, None], fx[None, :, None]
    else:
        fy, fx = fy[:, None], fx[None, :]
    top = a[y0][:, x0] * (1 - fx) + a[y0][:, x1] * fx
    bot = a[y1][:, x0] * (1 - fx) + a[y1][:, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def mesh_shape(map_h: int, map_w: int, resolution: int) -> tuple[int, int]:
    """(ny, nx) vertices for a mesh whose longer side has ``resolution`` vertices (aspect kept)."""
    if resolution < 2:
        raise ValueError(f"mesh resolution must be at least 2 vertices per side, got {resolution}")
    if resolution > MAX_MESH_SIDE:
        raise ValueError(f"mesh resolution {resolution} is above the supported {MAX_MESH_SIDE} per side")
    long_side = max(map_h, map_w)
    ny = max(2, round(resolution * map_h / long_side))
    nx = max(2, round(resolution * map_w / long_side))
    return ny, nx


def heightfield_to_grid(
    height_m: np.ndarray, size_m: float, resolution: int | None = None, *, flat: bool = False
) -> GridArrays:
    """Grid arrays for a height map [H, W] in metres spanning ``size_m`` along its longer side.

    ``resolution``: vertices along the longer side (None = one per pixel). ``flat``: all z = 0 (the
    Displace-modifier mode displaces a flat grid instead).
    """
    hm = np.asarray(height_m, dtype=np.float32)
    if hm.ndim != 2 or min(hm.shape) < 1:
        raise ValueError(f"height map must be a non-empty [H, W] array, got shape {hm.shape}")
    if not np.isfinite(hm).all():
        raise ValueError("height map contains NaN or infinite values")
    if not size_m > 0:
        raise ValueError(f"terrain size must be positive metres, got {size_m}")
    h, w = hm.shape
    ny, nx = mesh_shape(h, w, resolution if resolution else max(h, w, 2))
    # Pixel centres of the map span (w - 1) / w of its extent; the vertices go there.
    cell = size_m / max(h, w)
    ext_x, ext_y = cell * max(w - 1, 1), cell * max(h - 1, 1)
    xs = np.linspace(-ext_x / 2, ext_x / 2, nx, dtype=np.float32)
    ys = np.linspace(ext_y / 2, -ext_y / 2, ny, dtype=np.float32)  # row 0 = north = +y
    pos = np.empty((ny, nx, 3), np.float32)
    pos[..., 0] = xs[None, :]
    pos[..., 1] = ys[:, None]
    pos[..., 2] = 0.0 if flat else resample_bilinear(hm, ny, nx)

    vid = np.arange(ny * nx, dtype=np.int32).reshape(ny, nx)
    # Edges: horizontal ones first (row r, col c -> c + 1), then vertical ones (r -> r + 1).
    n_h = ny * (nx - 1)
    e_h = np.stack([vid[:, :-1], vid[:, 1:]], -1).reshape(-1, 2)
    e_v = np.stack([vid[:-1, :], vid[1:, :]], -1).reshape(-1, 2)
    edge_verts = np.concatenate([e_h, e_v]).astype(np.int32).ravel()
    eh = np.arange(n_h, dtype=np.int32).reshape(ny, nx - 1)
    ev = n_h + np.arange((ny - 1) * nx, dtype=np.int32).reshape(ny - 1, nx)
    # Face corners counter-clockwise seen from above (normal +z): NW, SW, SE, NE.
    corner_vert = np.stack([vid[:-1, :-1], vid[1:, :-1], vid[1:, 1:], vid[:-1, 1:]], -1).ravel()
    # Edge from each corner to the next: NW-SW (vertical, west), SW-SE (horizontal, south),
    # SE-NE (vertical, east), NE-NW (horizontal, north).
    corner_edge = np.stack([ev[:, :-1], eh[1:, :], ev[:, 1:], eh[:-1, :]], -1).ravel()
    n_faces = (ny - 1) * (nx - 1)
    loop_start = np.arange(0, 4 * n_faces, 4, dtype=np.int32)
    # UVs on the texture's pixel centres: u from 0.5/w to 1 - 0.5/w; v = 1 at the top (north) row.
    us = np.linspace(0.5 / w, 1 - 0.5 / w, nx, dtype=np.float32)
    vs = np.linspace(1 - 0.5 / h, 0.5 / h, ny, dtype=np.float32)
    vert_uv = np.stack(np.broadcast_arrays(us[None, :], vs[:, None]), -1).reshape(-1, 2)
    uv = vert_uv[corner_vert].ravel()
    return GridArrays(
        nx=nx,
        ny=ny,
        positions=pos.ravel(),
        edge_verts=edge_verts,
        corner_vert=corner_vert.astype(np.int32, copy=False),
        corner_edge=corner_edge.astype(np.int32, copy=False),
        loop_start=loop_start,
        uv=np.ascontiguousarray(uv, dtype=np.float32),
    )
