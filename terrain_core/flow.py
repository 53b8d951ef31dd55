"""Where water goes on a height map: D8 receivers, depressions resolved to an outlet, drainage area.

Numpy only (it runs inside Blender, which has no scipy). No Python loop over nodes: basins and depths come
from pointer jumping (each node's pointer doubles its reach per round, O(N log D) for N nodes and a longest
flow path of D), and passes over the tree walk its depth levels, one vectorised step per level (O(N) work
plus a small cost per level). The one loop over items is over closed basins (depressions), in a priority
flood over the basin graph.

Nodes are flat indices ``row * W + col``. Outlets (``outlet`` mask: water and, by the callers' choice, the
map edge) are the base level: they are their own receivers and everything drains into one of them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

# D8 neighbour offsets (row, col); their order breaks exact ties in the steepest descent.
_D8 = ((-1, 0), (0, -1), (0, 1), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1))
# Half of the 8-neighbourhood: every unordered neighbour pair once.
_PAIRS = ((0, 1), (1, 0), (1, 1), (1, -1))
_ROW_BLOCK = 256  # rows per block in whole-map passes, to bound temporaries on large maps


@dataclass
class Routing:
    """The flow tree of one height map (all arrays flat, length N = H * W)."""

    receiver: np.ndarray  # [N] int32 next node downstream; outlets point to themselves
    distance: np.ndarray  # [N] float32 metres to the receiver (0 at outlets)
    basin: np.ndarray  # [N] int32 closed basin of the node before depression handling; 0 = drains freely
    lake_level: np.ndarray  # [B + 1] float64 spill level of each closed basin (index 0: -inf)
    spill: np.ndarray  # [B + 1, 2] int64 (node inside, node outside) the basin spills over (row 0 unused)
    outlet: np.ndarray  # [N] bool

    def lake_mask(self, z_flat: np.ndarray) -> np.ndarray:
        """[N] bool: nodes under the water of a filled depression (below their basin's spill level)."""
        return z_flat < self.lake_level[self.basin]

    def fill_depth(self, z_flat: np.ndarray) -> np.ndarray:
        """[N] float64 metres of water a node would stand under with every depression filled to spilling."""
        return np.maximum(self.lake_level[self.basin] - z_flat, 0.0)


def steepest_descent(z: np.ndarray, outlet: np.ndarray, cell_size_m: float) -> tuple[np.ndarray, np.ndarray]:
    """D8 receivers [N] int32 and distances [N] float32 (m) of height map ``z`` [H, W].

    A node with no lower neighbour, or an outlet, is its own receiver (distance 0).
    """
    h, w = z.shape
    receiver = np.arange(h * w, dtype=np.int32)
    distance = np.zeros(h * w, dtype=np.float32)
    dists = [cell_size_m * float(np.hypot(dr, dc)) for dr, dc in _D8]
    flat_off = np.array([dr * w + dc for dr, dc in _D8], dtype=np.int32)
    for r0 in range(0, h, _ROW_BLOCK):
        r1 = min(h, r0 + _ROW_BLOCK)
        zc = z[r0:r1]
        # The block with a one-pixel ring; the map edge counts as level ground, never a receiver.
        zp = np.pad(z[max(r0 - 1, 0) : r1 + 1], ((r0 == 0, r1 == h), (1, 1)), mode="edge")
        best = np.zeros(zc.shape, dtype=np.float64)
        k_best = np.full(zc.shape, -1, dtype=np.int8)
        for k, (dr, dc) in enumerate(_D8):
            nb = zp[1 + dr : 1 + dr + (r1 - r0), 1 + dc : 1 + dc + w]
            s = (zc - nb) / dists[k]
            better = s > best
            best[better] = s[better]
            k_best[better] = k
        k_best[outlet[r0:r1]] = -1
        kb = k_best.ravel()
        moving = kb >= 0
        idx = np.flatnonzero(moving) + r0 * w
        receiver[idx] = idx + flat_off[kb[moving]]
        distance[idx] = np.asarray(dists, dtype=np.float32)[kb[moving]]
    return receiver, distance


def root_of(receiver: np.ndarray) -> np.ndarray:
    """[N] the node each node finally drains to along ``receiver`` (pointer jumping)."""
    r = receiver
    while True:
        r2 = r[r]
        if np.array_equal(r2, r):
            return r
        r = r2


def _basin_graph(zf: np.ndarray, basin: np.ndarray, shape: tuple[int, int]):
    """Lowest pass between every pair of touching basins: arrays (b1, b2, level, node1, node2)."""
    h, w = shape
    bz = basin.reshape(h, w)
    parts = []
    for dr, dc in _PAIRS:
        c0, c1 = max(0, -dc), w - max(0, dc)
        a_rows, b_rows = slice(0, h - dr), slice(dr, h)
        ba = bz[a_rows, c0:c1]
        bb = bz[b_rows, c0 + dc : c1 + dc]
        cross = ba != bb
        if not cross.any():
            continue
        ra, ca = np.nonzero(cross)
        na = ra * w + (ca + c0)
        nb = (ra + dr) * w + (ca + c0 + dc)
        parts.append((na, nb))
    if not parts:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0), empty, empty
    na = np.concatenate([p[0] for p in parts]).astype(np.int64)
    nb = np.concatenate([p[1] for p in parts]).astype(np.int64)
    b1, b2 = basin[na].astype(np.int64), basin[nb].astype(np.int64)
    swap = b1 > b2
    b1, b2 = np.where(swap, b2, b1), np.where(swap, b1, b2)
    na, nb = np.where(swap, nb, na), np.where(swap, na, nb)  # na lies in b1, nb in b2
    level = np.maximum(zf[na], zf[nb])
    nbas = int(basin.max()) + 1
    key = b1 * nbas + b2
    order = np.lexsort((level, key))
    key = key[order]
    first = np.ones(len(key), bool)
    first[1:] = key[1:] != key[:-1]
    sel = order[first]
    return b1[sel], b2[sel], level[sel], na[sel], nb[sel]


def route(z: np.ndarray, outlet: np.ndarray, cell_size_m: float) -> Routing:
    """Flow tree of ``z`` [H, W] in which every node reaches an outlet.

    Steepest descent first; each closed basin (a node with no lower neighbour that is not an outlet, and
    what drains into it) then spills over its lowest pass into the neighbour it would overflow into, found
    by a priority flood over the basin graph (the minimax path to an outlet). The path from the pass down to
    the basin's pit is reversed, so water crosses the depression to the pass (Braun & Willett 2013's
    "carving" of the receiver tree; heights are not changed).
    """
    h, w = z.shape
    n = h * w
    zf = z.reshape(-1).astype(np.float64, copy=False)
    outf = outlet.reshape(-1)
    receiver, distance = steepest_descent(z, outlet, cell_size_m)
    root = root_of(receiver)
    pits = np.flatnonzero((root == np.arange(n, dtype=root.dtype)) & ~outf)
    basin = np.zeros(n, dtype=np.int32)
    nb = len(pits)
    lake_level = np.full(nb + 1, -np.inf)
    spill = np.zeros((nb + 1, 2), dtype=np.int64)
    if nb == 0:
        return Routing(receiver, distance, basin, lake_level, spill, outf)
    ids = np.zeros(n, dtype=np.int32)
    ids[pits] = np.arange(1, nb + 1, dtype=np.int32)
    basin = ids[root]  # 0 for everything that drains to an outlet

    b1, b2, lev, n1, n2 = _basin_graph(zf, basin, (h, w))
    level, via = _flood_basins(b1, b2, lev, nb)
    lake_level[:] = level
    via_a = np.asarray(via[1:], dtype=np.int64)
    if (via_a < 0).any():  # cannot happen while the map edge or water are outlets; guard anyway
        raise ValueError("a closed basin has no path to an outlet")
    # Edge e < len(b1) joins (b1 -> b2) with nodes (n1, n2); e >= len(b1) is the same edge seen from b2.
    e = via_a % len(b1)
    from_b2 = via_a >= len(b1)  # the basin (v) is b1 of the edge when it was reached from b2
    inside = np.where(from_b2, n1[e], n2[e])
    outside = np.where(from_b2, n2[e], n1[e])
    spill[1:, 0], spill[1:, 1] = inside, outside
    _reverse_to_spill(receiver, distance, inside, outside, w, cell_size_m)
    return Routing(receiver, distance, basin, lake_level, spill, outf)


def _flood_basins(b1: np.ndarray, b2: np.ndarray, lev: np.ndarray, nb: int) -> tuple[list[float], list[int]]:
    """Priority flood over the basin graph (basin 0 = the outlets; edges b1 - b2 with pass heights
    ``lev``): each basin's spill level (the lowest possible highest pass on a path to an outlet) and the
    edge (0..2m-1; m.. = the edge seen from b2) by which it was reached, -1 if never."""
    # Adjacency lists (both directions) as Python lists: the flood below is a Python loop over basins.
    src = np.concatenate([b1, b2])
    order = np.argsort(src, kind="stable")
    starts = np.searchsorted(src[order], np.arange(nb + 2)).tolist()
    dst = np.concatenate([b2, b1])[order].tolist()
    elev = np.concatenate([lev, lev])[order].tolist()
    eid = order.tolist()
    level = [np.inf] * (nb + 1)
    via = [-1] * (nb + 1)  # edge (0..2m-1) by which a basin was reached
    done = [False] * (nb + 1)
    level[0] = -np.inf
    heap = [(-np.inf, 0)]
    while heap:
        lv, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = True
        for j in range(starts[u], starts[u + 1]):
            v = dst[j]
            if done[v]:
                continue
            cand = elev[j] if elev[j] > lv else lv
            if cand < level[v]:
                level[v] = cand
                via[v] = eid[j]
                heapq.heappush(heap, (cand, v))
    return level, via


def _reverse_to_spill(
    receiver: np.ndarray,
    distance: np.ndarray,
    inside: np.ndarray,
    outside: np.ndarray,
    w: int,
    cell_size_m: float,
) -> None:
    """Reverse the receiver chains from each spill node (``inside``, draining to ``outside``) down to its
    pit, all basins at once. In place: a chain node's old receiver is read in the same round that
    overwrites it, and chains never overlap."""
    cur = inside.astype(np.int64)
    target = outside.astype(np.int64)
    dist_cur = _pair_distance(cur, target, w, cell_size_m)
    while len(cur):
        nxt = receiver[cur].astype(np.int64)
        d_nxt = distance[cur]
        receiver[cur] = target
        distance[cur] = dist_cur
        go = nxt != cur
        cur, target, dist_cur = nxt[go], cur[go], d_nxt[go]


def _pair_distance(a: np.ndarray, b: np.ndarray, w: int, cell_size_m: float) -> np.ndarray:
    dr = np.abs(a // w - b // w)
    dc = np.abs(a % w - b % w)
    return (cell_size_m * np.hypot(dr, dc)).astype(np.float32)


class FlowTree:
    """A flow tree in upstream order, for fast repeated passes over it.

    Each node's depth (nodes to its outlet) comes from pointer jumping (O(N log D)); the nodes sorted by
    depth then make the levels of the tree: a pass walks them, deepest first to gather what flows down
    (drainage area, sediment) or outlets first to solve along the flow (the implicit incision), one
    vectorised step per level. Per pass that is O(N) work plus a small cost per level.
    """

    def __init__(self, receiver: np.ndarray):
        n = len(receiver)
        self.n = n
        dt = np.int32 if n < 2**31 - 1 else np.int64
        self.receiver = receiver.astype(dt, copy=False)
        node = np.arange(n, dtype=dt)
        depth = (self.receiver != node).astype(dt)
        ptr = self.receiver
        while True:
            nxt = ptr[ptr]
            if np.array_equal(nxt, ptr):
                break
            depth += depth[ptr]
            ptr = nxt
        del ptr, nxt, node
        counts = np.bincount(depth)
        # outlets first; 16-bit keys sort by radix (linear time) where the tree is shallow enough
        keys = depth.astype(np.uint16) if len(counts) <= 1 << 16 else depth
        self.order = np.argsort(keys, kind="stable").astype(dt)
        del keys, depth
        self.bounds = np.concatenate([[0], np.cumsum(counts)]).tolist()  # level d: order[b[d]:b[d+1]]
        self.levels = len(counts)

    def accumulate(self, weight: np.ndarray, passing: np.ndarray | None = None) -> np.ndarray:
        """Sum of ``weight`` over each node's upstream tree (the node included), [N] float64.

        With ``passing`` [N] in 0..1, what a node passes on is ``passing`` times what reaches it (its own
        weight included), so the result is what arrives at each node; the rest stays there. What reaches
        an outlet stops there.
        """
        s = np.array(weight, dtype=np.float64, copy=True)
        rcv, order, b = self.receiver, self.order, self.bounds
        for d in range(self.levels - 1, 0, -1):
            nodes = order[b[d] : b[d + 1]]
            v = s[nodes]
            if passing is not None:
                v *= passing[nodes]
            np.add.at(s, rcv[nodes], v)
        return s

    def solve_in_place(self, a: np.ndarray, b_coef: np.ndarray) -> np.ndarray:
        """Solve x_i = a_i + b_i * x_receiver(i) on the tree (outlets: b = 0), overwriting ``a`` [N or
        more] with x. This is the implicit stream-power update with slope exponent 1."""
        rcv, order, b = self.receiver, self.order, self.bounds
        for d in range(1, self.levels):
            nodes = order[b[d] : b[d + 1]]
            a[nodes] += b_coef[nodes] * a[rcv[nodes]]
        return a[: self.n]

    def solve(self, a: np.ndarray, b_coef: np.ndarray) -> np.ndarray:
        """``solve_in_place`` on a float64 copy of ``a``."""
        return self.solve_in_place(np.array(a, dtype=np.float64, copy=True), b_coef)


def drainage_area(
    z: np.ndarray, outlet: np.ndarray, cell_size_m: float, routing: Routing | None = None
) -> np.ndarray:
    """[H, W] float64 upstream area in m^2 of each node (its own cell included)."""
    r = routing if routing is not None else route(z, outlet, cell_size_m)
    ones = np.full(z.size, cell_size_m * cell_size_m)
    return FlowTree(r.receiver).accumulate(ones).reshape(z.shape)


def edge_mask(shape: tuple[int, int]) -> np.ndarray:
    """[H, W] bool, True on the outermost ring of pixels."""
    m = np.zeros(shape, dtype=bool)
    m[0, :] = m[-1, :] = True
    m[:, 0] = m[:, -1] = True
    return m
