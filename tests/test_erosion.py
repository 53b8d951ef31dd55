"""terrain_core.erosion, .flow and .flow_metrics on small real height maps (generated and synthetic)."""

from __future__ import annotations

import numpy as np
import pytest

from terrain_core import erosion, flow
from terrain_core.flow_metrics import drainage_tau, flow_metrics

CELL = 30.0


def _ridge_map(n: int = 96, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A rough island: a mountain ridge with hills and plains around it, sea on two sides, pits inside."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:n, 0:n] / (n - 1)
    z = 1500.0 * np.exp(-((x - 0.55) ** 2) / 0.03) * (0.6 + 0.4 * np.sin(6 * y)) + 200.0 * x * (1 - y)
    coarse = rng.normal(size=(n // 8 + 2, n // 8 + 2))
    z += 60.0 * np.kron(coarse, np.ones((8, 8)))[:n, :n]  # blocky noise: flats and closed depressions
    z += rng.normal(scale=3.0, size=(n, n))
    labels = np.full((n, n), 1, np.uint8)  # plains
    labels[z > 300] = 3  # hills
    labels[z > 800] = 5  # mountains
    labels[:, :6] = 0  # sea on the west
    labels[-5:, :] = 0  # and the south
    labels[20:30, 70:80] = 2  # forest
    z[labels == 0] = -5.0
    return z.astype(np.float32), labels


@pytest.fixture(scope="module")
def ridge():
    return _ridge_map()


@pytest.fixture(scope="module")
def eroded(ridge):
    z, lab = ridge
    return erosion.erode(z, lab, strength="medium", cell_size_m=CELL, seed=7)


def test_water_stays_water_and_never_rises(ridge, eroded):
    z, lab = ridge
    water = lab == 0
    assert np.array_equal(eroded.height_m[water], z[water])
    assert eroded.deposition[water].max() == 0.0 and eroded.wear[water].max() == 0.0
    # ... while the land did change, by a fair amount
    assert np.abs(eroded.height_m - z)[~water].max() > 10.0


def test_mass_balance_within_one_percent(ridge, eroded):
    z, _ = ridge
    b = eroded.balance
    assert b["eroded_m3"] > 0 and b["outflow_m3"] > 0
    # eroded = deposited + out through the outlets; the outflow is tallied from the fluxes, separately
    assert abs(b["eroded_m3"] - b["deposited_m3"] - b["outflow_m3"]) <= 0.01 * b["eroded_m3"]
    # and the masks are the height change: its net volume is what left
    net = float((eroded.height_m.astype(np.float64) - z).sum()) * CELL * CELL
    assert abs(net + b["outflow_m3"]) <= 0.01 * b["eroded_m3"]
    assert np.allclose(eroded.height_m - z, eroded.deposition - eroded.wear, atol=1e-3)


@pytest.mark.parametrize("level", ["light", "strong"])
def test_mass_balance_other_levels(ridge, level):
    z, lab = ridge
    b = erosion.erode(z, lab, strength=level, cell_size_m=CELL, seed=0).balance
    assert abs(b["eroded_m3"] - b["deposited_m3"] - b["outflow_m3"]) <= 0.01 * b["eroded_m3"]


def test_deterministic_per_seed(ridge, eroded):
    z, lab = ridge
    again = erosion.erode(z, lab, strength="medium", cell_size_m=CELL, seed=7)
    assert np.array_equal(again.height_m, eroded.height_m)
    assert np.array_equal(again.flow, eroded.flow)
    other = erosion.erode(z, lab, strength="medium", cell_size_m=CELL, seed=8)
    assert not np.array_equal(other.height_m, eroded.height_m)  # the seed draws the rock hardness


def test_levels_order_and_off_is_identity(ridge):
    z, lab = ridge
    off = erosion.erode(z, lab, strength="off", cell_size_m=CELL)
    assert np.array_equal(off.height_m, z) and off.balance["eroded_m3"] == 0.0
    assert off.flow.min() >= CELL * CELL  # the flow mask is there even without erosion
    vols = [
        erosion.erode(z, lab, strength=s, cell_size_m=CELL).balance["eroded_m3"] for s in erosion.LEVELS[1:]
    ]
    assert vols[0] < vols[1] < vols[2]


def test_mountains_wear_more_than_plains(ridge, eroded):
    z, lab = ridge
    assert eroded.wear[lab == 5].mean() > 3 * eroded.wear[lab == 1].mean()


def test_erosion_fills_closed_depressions(ridge, eroded):
    z, lab = ridge
    before = flow_metrics(z, lab, cell_size_m=CELL)["closed_depression_share"]
    after = flow_metrics(eroded.height_m, lab, cell_size_m=CELL)["closed_depression_share"]
    assert before > 0.02
    assert after < before


@pytest.mark.parametrize("value", [0.0, 250.0, -3.0])
def test_flat_and_constant_maps_give_no_nan(value):
    z = np.full((40, 50), value, np.float32)
    for lab in (np.full(z.shape, 5, np.uint8), np.zeros(z.shape, np.uint8)):
        e = erosion.erode(z, lab, strength="strong", cell_size_m=CELL, seed=1)
        for a in (e.height_m, e.flow, e.deposition, e.wear):
            assert np.isfinite(a).all()
        assert np.allclose(e.height_m, value)
        assert all(np.isfinite(v) for v in e.balance.values())


def test_progress_and_cancel(ridge):
    z, lab = ridge
    seen: list[float] = []
    erosion.erode(z, lab, strength="light", cell_size_m=CELL, progress=seen.append)
    k = erosion.PRESETS["light"].steps
    assert seen == pytest.approx([(i + 1) / k for i in range(k)])
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(erosion.ErosionCancelled):
        erosion.erode(z, lab, strength="medium", cell_size_m=CELL, cancel=cancel)
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strength": "extreme"}, "unknown erosion level"),
        ({"strength": -1.0}, "0..10"),
        ({"strength": float("nan")}, "0..10"),
        ({"iterations": -2}, "iterations"),
        ({"iterations": 2.5}, "iterations"),
        ({"cell_size_m": 0.0}, "cell size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_settings_are_one_line_errors(ridge, kwargs, message):
    z, lab = ridge
    args = {"strength": "light", "cell_size_m": CELL, **kwargs}
    with pytest.raises(erosion.ErosionError, match=message) as ei:
        erosion.erode(z, lab, **args)
    assert "\n" not in str(ei.value)


def test_bad_inputs_are_one_line_errors(ridge):
    z, lab = ridge
    with pytest.raises(erosion.ErosionError, match="differ in size"):
        erosion.erode(z[:-1], lab)
    bad = z.copy()
    bad[3, 3] = np.nan
    with pytest.raises(erosion.ErosionError, match="NaN"):
        erosion.erode(bad, lab)
    with pytest.raises(erosion.ErosionError, match="class ids"):
        erosion.erode(z, lab + 7)
    with pytest.raises(erosion.ErosionError, match="at least"):
        erosion.erode(z[:2], lab[:2])


def test_strength_number_scales_medium(ridge):
    z, lab = ridge
    one = erosion.erode(z, lab, strength=1.0, cell_size_m=CELL, seed=7)
    med = erosion.erode(z, lab, strength="medium", cell_size_m=CELL, seed=7)
    assert np.array_equal(one.height_m, med.height_m)
    two = erosion.erode(z, lab, strength=2.0, iterations=2, cell_size_m=CELL, seed=7)
    assert two.settings["steps"] == 2 and two.settings["fluvial_k"] == 2 * med.settings["fluvial_k"]


# ------------------------------------------------------------------------------------------------ flow


def test_routing_reaches_an_outlet_from_every_node(ridge):
    z, lab = ridge
    outlet = (lab == 0) | flow.edge_mask(z.shape)
    r = flow.route(z.astype(np.float64), outlet, CELL)
    roots = flow.root_of(r.receiver)
    assert outlet.reshape(-1)[roots].all()
    assert len(r.lake_level) > 5  # the blocky noise made closed basins, and each found its way out
    area = flow.FlowTree(r.receiver).accumulate(np.ones(z.size))
    assert area[outlet.reshape(-1)].sum() == pytest.approx(z.size)  # every cell's water arrives once


def test_flow_tree_matches_a_plain_loop_over_the_tree():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 40)).cumsum(0).astype(np.float64)
    outlet = flow.edge_mask(z.shape)
    r = flow.route(z, outlet, 1.0)
    rcv = r.receiver
    w = rng.random(z.size)
    passing = rng.random(z.size)
    lad = flow.FlowTree(rcv)
    got = lad.accumulate(w, passing)
    # reference: visit nodes from the farthest upstream down, by depth
    depth = np.zeros(z.size, int)
    for i in range(z.size):
        j = i
        while rcv[j] != j:
            j, depth[i] = rcv[j], depth[i] + 1
    want = w.copy()
    for i in np.argsort(-depth, kind="stable"):
        if rcv[i] != i:
            want[rcv[i]] += passing[i] * want[i]
    assert np.allclose(got, want)
    a, b = rng.random(z.size), rng.random(z.size)
    b[rcv == np.arange(z.size)] = 0.0
    x = lad.solve(a, b)
    assert np.allclose(x, a + b * x[rcv])


def test_drainage_tau_of_a_known_power_law():
    rng = np.random.default_rng(1)
    a = (1.0 - rng.random(200_000)) ** (-1 / 0.45)  # P(A >= a) = a^-0.45
    tau = drainage_tau(a, np.ones(a.size, bool), a_min_cells=10, a_max_share=0.01)
    assert tau == pytest.approx(0.45, abs=0.03)
    assert drainage_tau(a[:10], np.ones(10, bool)) is None


def test_flow_metrics_of_a_bowl_and_a_cone():
    y, x = np.mgrid[-20:21, -20:21].astype(float)
    bowl = np.hypot(x, y) * 10.0
    cone = -bowl
    assert flow_metrics(bowl, cell_size_m=CELL)["closed_depression_share"] > 0.5
    assert flow_metrics(cone, cell_size_m=CELL)["closed_depression_share"] == 0.0
    with pytest.raises(ValueError, match="NaN"):
        flow_metrics(np.full((5, 5), np.nan))


def test_erodes_in_a_python_with_numpy_only():
    # Blender's Python has numpy but no scipy: the erosion must run there as it is.
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "for m in ('torch', 'bpy', 'PIL', 'scipy', 'training', 'sklearn', 'onnxruntime'):\n"
        "    sys.modules[m] = None\n"
        "import numpy as np\n"
        "from terrain_core.erosion import erode\n"
        "z = np.add.outer(np.arange(32.0), np.arange(32.0)) * 10\n"
        "lab = np.full(z.shape, 5, np.uint8); lab[:, :3] = 0\n"
        "e = erode(z, lab, strength='light', cell_size_m=30.0)\n"
        "print('ok', bool(np.isfinite(e.height_m).all()))\n"
    )
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok True", r.stderr


def test_evaluate_flow_realism_reports_real_generated_and_eroded():
    from training.evaluate import flow_realism

    maps = [_ridge_map(96, seed=s) for s in (1, 2, 3)]
    lo, hi = -100.0, 1900.0
    gen = np.stack([2 * (z - lo) / (hi - lo) - 1 for z, _ in maps]).astype(np.float32)
    labels = np.stack([lab for _, lab in maps])
    real = np.stack([np.clip(g + 0.02 * np.sin(np.arange(96) / 5.0)[None], -1, 1) for g in gen])
    out, eroded = flow_realism(labels, real, gen, (lo, hi), CELL)
    assert eroded.shape == gen.shape and np.isfinite(eroded).all() and not np.array_equal(eroded, gen)
    assert np.array_equal(eroded[labels == 0], gen[labels == 0])
    for metric in ("closed_depression_share", "drainage_tau"):
        assert set(out[metric]) == {"real", "generated", "generated_medium"}
        for v in out[metric].values():
            assert v["p10"] <= v["mean"] <= v["p90"] and 0 <= v["in_real_p10_p90"] <= 1
    cds = out["closed_depression_share"]
    assert cds["generated_medium"]["mean"] < cds["generated"]["mean"]


def test_medium_grows_a_branching_network_on_a_smooth_slope():
    # The generator's smooth slopes drain in parallel lines (a steep fall-off of the drainage-area
    # distribution, large tau); medium's seeded roughness and incision gather them into valleys.
    n = 128
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    z = 8.0 * (n - y) + 20.0 * np.sin(x / 23.0) + 10.0 * np.cos(y / 17.0)
    lab = np.full((n, n), 3, np.uint8)
    lab[-4:] = 0
    z[-4:] = 0.0
    before = flow_metrics(z, lab, cell_size_m=CELL)["drainage_tau"]
    e = erosion.erode(z, lab, strength="medium", cell_size_m=CELL, seed=3)
    after = flow_metrics(e.height_m, lab, cell_size_m=CELL)["drainage_tau"]
    assert after < before - 0.1, (before, after)
    assert e.flow.max() > 20 * (CELL * CELL) * n  # some channel gathers the water of many columns
