"""The terrain mesh as OBJ + MTL text, formatted with array operations (no per-vertex Python).

numpy only (it runs in Blender's Python). ``write_obj`` takes a height grid in metres (an array or a
``rasterfiles.Rows`` source, so a reduced mesh of a large map gathers only the kept samples);
``terrain_core.outputs`` decides the grid, the step and the file names.

Conventions
- Image row 0 is north, column 0 is west.
- OBJ, ``up_axis="y"`` (the OBJ default, what Blender's and most engines' importers expect): x = east,
  y = up (height in metres), z = south (image rows). Blender's importer (forward -Z, up Y) turns that into
  x = east, y = north, z = up. ``up_axis="z"``: x = east, y = north, z = up, for tools that read Z-up.
  The mesh is centred on the origin in x/z (or x/y); heights are absolute metres.
- Vertices sit on pixel centres (uv = pixel centre), so a W-pixel height map spans (W - 1) cells. With
  ``plus_one`` the height is resampled to (H + 1) x (W + 1) samples on the pixel corners, so the mesh spans
  exactly W cells and the W-pixel texture covers it with uv 0..1 at the corners; that is the "2^n + 1"
  height grid game engines (Unity, Unreal) expect, while textures stay at 2^n, which GPUs prefer.
- OBJ text: heights with 4 decimals (0.1 mm); numbers are padded with spaces to one width per column
  (valid OBJ: tokens are separated by any run of whitespace). Fixed widths let every line be gathered
  from pre-formatted tables with whole-row copies, about 10x faster than a per-vertex Python loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from terrain_core.rasterfiles import Rows, array_rows

# Ground distance between two height samples when neither the caller nor the model says: about the
# resolution of public global elevation data (SRTM/Copernicus 1 arc-second).
DEFAULT_CELL_SIZE_M = 30.0

_OBJ_CHUNK = 1 << 15  # lines per block: the buffers stay cache-sized, memory bounded whatever the size


def _digit_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ASCII of 0..9999 as 4-byte words ('<u4'); of 4-decimal fractions ".1234" as [10000, 5] bytes (and
    [10000, 6] with a newline).

    Formatting by table lookup: one integer division per 4 digits instead of one per digit. Integer table
    modes (index = value + 10000 * mode): 0 = a leading group that is all zero (prints nothing), 1 = the
    first printed group (no leading zeros; 0 prints "0"), 2 = an inner group (zero-padded). Unused
    positions are spaces. Fractions have their trailing zeros (and, for 0, the dot) replaced by spaces.
    """
    k = np.arange(10000, dtype=np.int64)[:, None]
    pw = 10 ** np.arange(3, -1, -1, dtype=np.int64)[None]  # [1, 4]: 1000, 100, 10, 1
    digits = ((k // pw) % 10 + 48).astype(np.uint8)  # [10000, 4] zero-padded "0042"
    leading = (k >= pw) | (pw == 1)  # digits printed without leading zeros
    ints = np.full((3, 10000, 4), ord(" "), dtype=np.uint8)  # [mode, value, byte]
    ints[1] = np.where(leading, digits, ord(" "))
    ints[2] = digits
    frac = np.full((10000, 5), ord(" "), dtype=np.uint8)
    frac[:, 0] = np.where(k[:, 0] > 0, ord("."), ord(" "))
    frac[:, 1:] = np.where(k % (pw * 10) != 0, digits, ord(" "))  # digit j kept unless it and the rest are 0
    frac_nl = np.concatenate([frac, np.full((10000, 1), ord("\n"), np.uint8)], axis=1)
    return ints.reshape(-1, 4).view("<u4").ravel(), frac, frac_nl


_TABLES: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    global _TABLES
    if _TABLES is None:
        _TABLES = _digit_tables()
    return _TABLES


def _ascii_uint(a: np.ndarray, groups: int) -> np.ndarray:
    """[N] non-negative int64 < 10**(4 * groups) -> [N, 4 * groups] ASCII, right-aligned, space-filled."""
    a = np.asarray(a, dtype=np.int64)
    words = np.empty((a.shape[0], groups), dtype="<u4")
    table = _tables()[0]
    rest = a
    for i in range(groups - 1, -1, -1):  # least significant group first
        q = rest // 10000 if i > 0 else None
        val = rest - q * 10000 if q is not None else rest
        lo_bound = 10 ** (4 * (groups - 1 - i)) if i < groups - 1 else 0  # the last group always prints
        mode = (a >= 10 ** (4 * (groups - i))).astype(np.int64) + (a >= lo_bound)
        words[:, i] = table[val + 10000 * mode]
        rest = q
    return words.view(np.uint8)


def _digit_count(a: np.ndarray, width: int) -> np.ndarray:
    nd = np.ones(a.shape, dtype=np.int64)
    for j in range(1, width):
        nd += a >= 10**j
    return nd


def _int_text(a: np.ndarray, width: int) -> np.ndarray:
    """[N] non-negative ints < 10**width -> digits right-aligned, space-filled: [N, width] uint8."""
    groups = (width + 3) // 4
    return _ascii_uint(a, groups)[:, 4 * groups - width :]


_SPACES = np.array([0x2020202020202020 << (8 * n) & 0xFFFFFFFFFFFFFFFF for n in range(9)], dtype="<u8")


def _left_aligned(a: np.ndarray, width: int) -> np.ndarray:
    """[N] non-negative ints < 10**width -> digits left-aligned, space-filled: [N, width] uint8."""
    nd = _digit_count(a, width)
    if width <= 8:
        # In one little-endian word byte i is bits 8i..8i+7: shifting right by 8 * (8 - nd) bits moves
        # the digits from the end of the word to its start; the freed high bytes become spaces.
        r8 = np.ascontiguousarray(_ascii_uint(a, 2)).view("<u8")[:, 0]
        l8 = np.right_shift(r8, (8 * (8 - nd)).astype(np.uint64)) & ~_SPACES[nd] | _SPACES[nd]
        return l8[:, None].view(np.uint8)[:, :width]
    r = _int_text(a, width)  # beyond 10**8 vertices: the general, slower way
    src = np.minimum(np.arange(width)[None] + (width - nd)[:, None], width - 1)  # [N, width]
    return np.where(np.arange(width)[None] < nd[:, None], np.take_along_axis(r, src, axis=1), np.uint8(32))


def _corner_table(first: int, count: int, width: int) -> np.ndarray:
    """Text of vertices first .. first + count - 1 as face corners: [3 * count, 2 * width + 3] uint8.

    Rows [0, count) are the first corner of a line ("f 12/12"), [count, 2 count) a middle one ("  12/12"),
    [2 count, 3 count) the last ("  12/12\n"), all of one width, so a face line is three gathered rows.
    The vertex index is right-aligned and the uv index left-aligned: the padding spaces fall between
    tokens (OBJ separates them by any run of whitespace).
    """
    a = np.arange(first, first + count, dtype=np.int64)
    lead, slash = np.full((1, 2), ord(" "), np.uint8), np.full((1, 1), ord("/"), np.uint8)
    middle = _join_fields((count,), [lead, _int_text(a, width), slash, _left_aligned(a, width)])
    t = np.empty((3, middle.size), dtype=np.uint8)
    t[1] = middle
    t[0] = middle
    t[2, :-1] = middle[1:]  # shifted one byte left: each row's leading space moves to the row before
    t = t.reshape(3, count, -1)
    t[0, :, 0] = ord("f")
    t[2, :, -1] = ord("\n")
    return t.reshape(3 * count, -1)


_INT_TABLE_MAX = 10**6  # integer parts up to this (metres) are formatted by table; beyond, per vertex


def _height_int_table(max_int: int, int_width: int) -> np.ndarray | None:
    """Text "  -123" of integer parts 0..max_int, positive then negative: [2 (max_int + 1), int_width + 2].

    The sign comes from the height, not its integer part (-0.5 is "-0" + ".5"). None when max_int is
    beyond ``_INT_TABLE_MAX`` (the table would be bigger than the mesh).
    """
    if max_int > _INT_TABLE_MAX:
        return None
    vals = np.arange(max_int + 1, dtype=np.int64)
    return np.concatenate([_int_part_text(vals, False, int_width), _int_part_text(vals, True, int_width)])


def _int_part_text(ip: np.ndarray, negative: np.ndarray | bool, int_width: int) -> np.ndarray:
    out = np.full((ip.shape[0], int_width + 2), ord(" "), dtype=np.uint8)
    out[:, 2:] = _int_text(ip, int_width)
    neg = np.nonzero(np.broadcast_to(negative, ip.shape))[0]
    out[neg, int_width + 1 - _digit_count(ip[neg], int_width)] = ord("-")  # right before the first digit
    return out


def _height_tokens(
    h: np.ndarray, int_table: np.ndarray | None, int_width: int, newline: bool
) -> tuple[np.ndarray, np.ndarray]:
    """[N] metres -> (integer part text [N, int_width + 2] with sign, fraction text [N, 5 or 6])."""
    q = np.rint(np.asarray(h, dtype=np.float64) * 1e4).astype(np.int64)
    a = np.abs(q)
    ip = a // 10000
    if int_table is None:
        ints = _int_part_text(ip, q < 0, int_width)
    else:
        ints = np.take(int_table, ip + (int_table.shape[0] // 2) * (q < 0), axis=0)
    frac = _tables()[2 if newline else 1]
    return ints, np.take(frac, a - ip * 10000, axis=0)


def _fmt(v: float, fmt: str) -> bytes:
    s = fmt % v
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return b"0" if s in ("-0", "") else s.encode()


def _text_table(values: np.ndarray, fmt: str, prefix: bytes = b"", suffix: bytes = b"") -> np.ndarray:
    """Few distinct values (a grid's row or column coordinates) as prefix + " 12.5" (right-justified) +
    suffix: [n, W] uint8."""
    strs = [b" " + _fmt(v, fmt) for v in np.asarray(values, dtype=np.float64)]
    w = max(len(s) for s in strs)
    text = b"".join(prefix + s.rjust(w) + suffix for s in strs)
    return np.frombuffer(text, np.uint8).reshape(len(strs), -1)


def _join_fields(lead: tuple[int, ...], parts: list[np.ndarray]) -> np.ndarray:
    """Lines from parts (uint8 arrays [..., w] broadcasting to [*lead, w]) as one flat uint8 array.

    Each part is copied as one w-byte element per line (a structured dtype of void fields), which costs
    one element copy per part and line instead of one per byte.
    """
    widths = [int(p.shape[-1]) for p in parts]
    offsets = np.cumsum([0, *widths[:-1]]).tolist()
    names = [f"p{i}" for i in range(len(parts))]
    dt = np.dtype({"names": names, "formats": [f"V{w}" for w in widths], "offsets": offsets,
                   "itemsize": sum(widths)})  # fmt: skip
    out = np.empty(lead, dtype=dt)
    for name, p, w in zip(names, parts, widths, strict=True):
        out[name] = np.ascontiguousarray(p).view(f"V{w}")[..., 0]
    return out.reshape(-1).view(np.uint8)


def grid_indices(n: int, step: int) -> np.ndarray:
    """Sample positions 0, step, 2*step, ... always including the last one (n - 1)."""
    idx = np.arange(0, n, step)
    if idx[-1] != n - 1:
        idx = np.append(idx, n - 1)
    return idx


def write_obj(
    path_obj: str | Path,
    height_m: np.ndarray | Rows,
    cell_size_m: float | None = None,
    *,
    size_m: float | None = None,
    texture_name: str = "texture.png",
    material: str = "terrain",
    step: int = 1,
    up_axis: str = "y",
    corner_uv: bool = False,
    write_mtl: bool = True,
) -> dict[str, Any]:
    """Write a textured height-field mesh: ``path_obj`` and, beside it, the MTL (same stem, ``.mtl``).

    ``height_m`` [H, W] in metres becomes an (H x W)-vertex grid, two triangles per cell, counter-clockwise
    seen from above (normals up). Spacing: ``cell_size_m`` between samples, or ``size_m`` = the width of the
    whole mesh in metres; default ``DEFAULT_CELL_SIZE_M``. ``step`` > 1 keeps every step-th sample (the
    last row and column always stay) for lighter meshes. ``corner_uv``: vertices are on pixel corners (a
    ``plus_one_resample``d height under a W-pixel texture: uv 0..1) instead of pixel centres. Axis
    conventions: module docstring. ``height_m`` may be a ``Rows`` source: only the kept samples are
    gathered (a reduced mesh of a large map never holds the map in float64). Returns counts and paths.
    """
    rows = height_m if isinstance(height_m, Rows) else array_rows(np.asarray(height_m))
    cell = _mesh_cell_size(rows, cell_size_m, size_m, step, up_axis)
    ri, ci = grid_indices(rows.height, int(step)), grid_indices(rows.width, int(step))
    nr, nc = len(ri), len(ci)
    path_obj = Path(path_obj)
    path_mtl = path_obj.with_suffix(".mtl")
    hs = rows.gather(ri, ci).astype(np.float64)  # [nr, nc]
    if not np.isfinite(hs).all():
        raise ValueError("height contains NaN or infinite values")

    n_v = nr * nc
    n_f = 2 * (nr - 1) * (nc - 1)
    rows_per_chunk = max(1, _OBJ_CHUNK // nc)
    with open(path_obj, "wb") as f:
        f.write(
            (
                f"# terrain-gan height-field mesh: {nc} x {nr} vertices, {n_f} triangles\n"
                f"# units: metres; up axis: {up_axis.upper()}; "
                + ("x east, y up, z south\n" if up_axis == "y" else "x east, y north, z up\n")
                + f"mtllib {path_mtl.name}\no terrain\n"
            ).encode()
        )
        # Every line is a few pieces of text gathered from tables (np.take of whole rows) and joined as
        # fixed-width fields: no per-character Python, and no per-byte numpy work on the big arrays.
        # Numbers are padded with spaces to one width per column (OBJ takes any run of spaces between
        # tokens).
        _write_vertices(f, hs, ri, ci, (rows.height, rows.width), cell, up_axis, rows_per_chunk)
        _write_uvs(f, ri, ci, (rows.height, rows.width), corner_uv, rows_per_chunk)
        f.write(f"usemtl {material}\ns 1\n".encode())
        _write_faces(f, nr, nc, rows_per_chunk)
    if write_mtl:
        path_mtl.write_text(
            f"# terrain-gan material\nnewmtl {material}\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\n"
            f"Ks 0.000 0.000 0.000\nNs 1.0\nd 1.0\nillum 1\nmap_Kd {texture_name}\n"
        )
    return {
        "obj": path_obj,
        "mtl": path_mtl if write_mtl else None,
        "vertices": n_v,
        "faces": n_f,
        "cell_size_m": cell * int(step),
        "step": int(step),
        "up_axis": up_axis,
    }


def _mesh_cell_size(
    rows: Rows, cell_size_m: float | None, size_m: float | None, step: int, up_axis: str
) -> float:
    """The checked arguments of ``write_obj``: metres between neighbouring samples, or ``ValueError``."""
    if rows.channels != 1 or rows.height < 2 or rows.width < 2:
        raise ValueError(
            f"height must be [H, W] with H, W >= 2, got {rows.height}x{rows.width}x{rows.channels}"
        )
    if up_axis not in ("y", "z"):
        raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
    if int(step) != step or step < 1:
        raise ValueError(f"step must be a positive integer, got {step}")
    if size_m is not None:
        if cell_size_m is not None:
            raise ValueError("give cell_size_m or size_m, not both")
        if not size_m > 0:
            raise ValueError(f"size_m must be positive, got {size_m}")
        cell_size_m = size_m / (rows.width - 1)
    cell = DEFAULT_CELL_SIZE_M if cell_size_m is None else float(cell_size_m)
    if not cell > 0:
        raise ValueError(f"cell_size_m must be positive, got {cell}")
    return cell


def _write_vertices(
    f: BinaryIO,
    hs: np.ndarray,
    ri: np.ndarray,
    ci: np.ndarray,
    size: tuple[int, int],
    cell: float,
    up_axis: str,
    rows_per_chunk: int,
) -> None:
    """The ``v`` lines of the kept samples ``hs`` [nr, nc] (rows ``ri``, columns ``ci`` of a grid of
    ``size`` samples), centred on the origin; pixel rows run south. Ground coordinates depend only on the
    column or only on the row, so they are formatted once per column/row; heights go through digit tables.
    """
    rows_n, cols_n = size
    nr, nc = hs.shape
    east = ci * cell - (cols_n - 1) * cell / 2.0  # [nc]
    south = ri * cell - (rows_n - 1) * cell / 2.0  # [nr]
    q_max = int(np.abs(np.rint(hs * 1e4)).max()) // 10000
    int_width = len(str(q_max))
    int_table = _height_int_table(q_max, int_width)
    tx = _text_table(east, "%.4f", prefix=b"v")[None]  # [1, nc, w]
    if up_axis == "y":
        trow = _text_table(south, "%.4f", suffix=b"\n")  # [nr, w]
    else:
        trow = _text_table(-south, "%.4f")
    for r0 in range(0, nr, rows_per_chunk):  # v x y z
        r1 = min(nr, r0 + rows_per_chunk)
        ints, frac = _height_tokens(hs[r0:r1].ravel(), int_table, int_width, newline=up_axis == "z")
        ints, frac = ints.reshape(r1 - r0, nc, -1), frac.reshape(r1 - r0, nc, -1)
        tr = trow[r0:r1, None]
        parts = [tx, ints, frac, tr] if up_axis == "y" else [tx, tr, ints, frac]
        f.write(_join_fields((r1 - r0, nc), parts))


def _write_uvs(
    f: BinaryIO, ri: np.ndarray, ci: np.ndarray, size: tuple[int, int], corner_uv: bool, rows_per_chunk: int
) -> None:
    """The ``vt`` lines, in the vertices' order: pixel centres of the H x W texture, or its corners."""
    rows_n, cols_n = size
    if corner_uv:
        u, v = ci / (cols_n - 1), 1.0 - ri / (rows_n - 1)
    else:  # pixel centres of an H x W texture; OBJ's v runs up from the bottom of the image
        u, v = (ci + 0.5) / cols_n, 1.0 - (ri + 0.5) / rows_n
    nr, nc = len(ri), len(ci)
    tu = _text_table(u, "%.6f", prefix=b"vt")[None]
    tv = _text_table(v, "%.6f", suffix=b"\n")
    for r0 in range(0, nr, rows_per_chunk):  # vt u v
        r1 = min(nr, r0 + rows_per_chunk)
        f.write(_join_fields((r1 - r0, nc), [tu, tv[r0:r1, None]]))


def _write_faces(f: BinaryIO, nr: int, nc: int, rows_per_chunk: int) -> None:
    """The ``f a/a b/b c/c`` lines of an nr x nc vertex grid: vertex and uv lists share one order, so each
    corner uses the same index twice; indices go through digit tables."""
    width = len(str(nr * nc))
    cells = np.arange(nc - 1)
    for r0 in range(0, nr - 1, rows_per_chunk):
        r1 = min(nr - 1, r0 + rows_per_chunk)
        m = (r1 - r0 + 1) * nc  # vertices on rows r0 .. r1 (cell rows r0 .. r1 - 1 touch those)
        table = _corner_table(r0 * nc + 1, m, width)  # first / middle / last corner variants
        tl = (np.arange(r1 - r0)[:, None] * nc + cells[None]).ravel()  # local, 0-based
        # Per cell: (top-left, bottom-left, top-right) and (top-right, bottom-left, bottom-right) are
        # counter-clockwise seen from above in both axis conventions (normals up). Table rows: first
        # corners at 0, middle ones at m, last ones at 2 m.
        offsets = np.array([0, m + nc, 2 * m + 1, 1, m + nc, 2 * m + nc + 1], dtype=np.int64)
        rows = tl[:, None] + offsets[None, :]  # [cells, 6]
        f.write(np.take(table, rows.ravel(), axis=0).ravel())


def _obj_reference_loop(path_obj: str | Path, height_m: np.ndarray, cell_size_m: float = 1.0) -> None:
    """SPEED BASELINE ONLY (benchmarks and tests): the original's way, a Python loop per vertex and face.

    Mimics its cost (one formatted write per line, ``v x z y`` with 6 decimals, per-cell faces) so the
    vectorised ``write_obj`` can be timed against it. Unlike the original it puts a newline after
    ``s 1``. Do not use it to export.
    """
    h = np.asarray(height_m, dtype=np.float64)
    rows_n, cols_n = h.shape
    path_obj = Path(path_obj)
    with open(path_obj, "w") as f:
        f.write(f"mtllib {path_obj.with_suffix('.mtl').name}\n")
        for y in range(rows_n):
            for x in range(cols_n):
                f.write("v %f %f %f\n" % (x * cell_size_m, h[y, x], y * cell_size_m))  # noqa: UP031
        for y in range(rows_n):
            for x in range(cols_n):
                f.write("vt %f %f\n" % (x / (cols_n - 1), 1 - y / (rows_n - 1)))  # noqa: UP031
        f.write("usemtl terrain\ns 1\n")
        for y in range(rows_n - 1):
            for x in range(cols_n - 1):
                a = y * cols_n + x + 1
                b, c, d = a + cols_n, a + 1, a + cols_n + 1
                f.write("f %d/%d %d/%d %d/%d\n" % (a, a, b, b, c, c))  # noqa: UP031
                f.write("f %d/%d %d/%d %d/%d\n" % (c, c, b, b, d, d))  # noqa: UP031
