"""Segmentation pipeline: cluster -> class matching, override file, blob post-processing, the whole fit."""

from __future__ import annotations

import numpy as np
import pytest

from terrain_core.labels import CLASS_NAMES
from training.data.segment import (
    DESCRIPTOR_NAMES,
    LAND_CLASSES,
    PROTOTYPES,
    WATER,
    BlobParams,
    SegmentationError,
    apply_water_rule,
    assign_clusters,
    boundary_density,
    fit_segmenter,
    majority_filter,
    postprocess,
    read_override,
    remove_small_regions,
)


def proto_descriptors(classes, rng, noise=0.1):
    """Cluster descriptors shaped like the named class prototypes (in standardised units) plus noise."""
    d = np.array([[PROTOTYPES[CLASS_NAMES[c]].get(n, 0.0) for n in DESCRIPTOR_NAMES] for c in classes])
    return d + rng.normal(0, noise, d.shape)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clusters_that_look_like_classes_get_those_classes(seed):
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(LAND_CLASSES))
    d = proto_descriptors(order, rng)
    # Affine changes of units (metres vs km, 0..1 vs 0..255) must not matter: descriptors are standardised.
    d = d * rng.uniform(0.5, 3.0, d.shape[1]) + rng.uniform(-5, 5, d.shape[1])
    assert assign_clusters(d, LAND_CLASSES) == [int(c) for c in order]
    full = list(rng.permutation(7))
    assert assign_clusters(proto_descriptors(full, rng), None) == [int(c) for c in full]


def test_physical_descriptors_map_sensibly():
    # Hand-written clusters in physical units: (height, roughness, below_sea, blueness, greenness,
    # brightness, redness), like the real maps' cluster means.
    clusters = {
        "mountains": [3.2, 3.0, 0, -0.10, -0.02, 0.62, 0.05],
        "forest": [0.6, 0.8, 0, -0.10, 0.12, 0.50, -0.05],
        "desert": [1.4, 0.5, 0, -0.22, -0.03, 0.78, 0.30],
        "plains": [0.4, 0.3, 0, -0.15, 0.05, 0.72, 0.12],
        "hills": [1.9, 1.8, 0, -0.18, -0.03, 0.55, 0.28],
        "highland": [2.6, 1.1, 0, -0.12, -0.01, 0.70, 0.06],
    }
    names = list(clusters)
    got = assign_clusters(np.array([clusters[n] for n in names]), LAND_CLASSES)
    assert [CLASS_NAMES[c] for c in got] == names


def test_override_file(tmp_path):
    p = tmp_path / "classes.json"
    p.write_text('{"0": "desert", "3": "water"}')
    assert read_override(p) == {0: CLASS_NAMES.index("desert"), 3: WATER}
    p.write_text('{"0": "lava"}')
    with pytest.raises(SegmentationError, match="unknown class 'lava'"):
        read_override(p)
    p.write_text('{"9": "forest"}')
    with pytest.raises(SegmentationError, match="cluster 9 out of range"):
        read_override(p)
    p.write_text("[1, 2")
    with pytest.raises(SegmentationError, match="not valid JSON"):
        read_override(p)
    with pytest.raises(SegmentationError, match="cannot read"):
        read_override(tmp_path / "missing.json")


def noisy_regions(rng, size=128):
    """A label map of 4 big quadrant regions with 25% salt-and-pepper noise, and its class probabilities."""
    truth = np.zeros((size, size), np.uint8)
    truth[: size // 2, size // 2 :] = 2
    truth[size // 2 :, : size // 2] = 3
    truth[size // 2 :, size // 2 :] = 5
    noisy = np.where(rng.random(truth.shape) < 0.25, rng.integers(0, 7, truth.shape), truth)
    proba = np.full((size, size, 7), 0.02, np.float32)
    np.put_along_axis(proba, noisy[..., None].astype(int), 0.88, -1)
    return truth, noisy, proba


def test_postprocess_makes_large_smooth_blobs():
    rng = np.random.default_rng(0)
    truth, noisy, proba = noisy_regions(rng)
    assert boundary_density(noisy) > 0.3
    for k in range(5):
        params = BlobParams.random(np.random.default_rng(k), 128)
        lab = postprocess(proba, params)
        # Boundary length per area: the 4 quadrants have 2 * 128 boundary edges over 128^2 pixels.
        assert boundary_density(lab) < 2.5 * boundary_density(truth), params
        assert (lab == truth).mean() > 0.95
    a = postprocess(proba, BlobParams(2.0, 3, 1, 10))
    b = postprocess(proba, BlobParams(6.0, 9, 2, 300))
    assert not np.array_equal(a, b)  # randomised parameters give different maps of the same crop


def test_small_regions_are_absorbed():
    lab = np.zeros((64, 64), np.uint8)
    lab[10:13, 10:13] = 4  # 9 pixels
    lab[30:60, 30:60] = 2  # 900 pixels
    out = remove_small_regions(lab, 50)
    assert (out[10:13, 10:13] == 0).all() and (out[30:60, 30:60] == 2).all()
    assert (majority_filter(lab, 5)[10:13, 10:13] == 0).all()


def test_water_rule():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(7), (8, 8)).astype(np.float32)
    h = rng.normal(0, 100, (8, 8))
    q = apply_water_rule(p, h)
    assert (q.argmax(-1)[h <= 0] == WATER).all() and (q.argmax(-1)[h > 0] != WATER).all()
    np.testing.assert_allclose(q.sum(-1), 1.0, rtol=1e-5)


def test_fit_on_procedural_crops_puts_classes_where_they_belong():
    from training.data.procedural import WorldParams, make_world

    w = make_world(5, WorldParams(rows=128, cols=256, erosion_iterations=2))
    rng = np.random.default_rng(0)
    crops = []
    while len(crops) < 12:
        y, x = rng.integers(0, 128 - 48), rng.integers(0, 256 - 48)
        h = w.height_m[y : y + 48, x : x + 48]
        if 0.2 < (h > 0).mean():
            crops.append((w.terrain[y : y + 48, x : x + 48], h))
    seg = fit_segmenter(crops, seed=0, per_crop=600)
    assert sorted(seg.cluster_to_class) == LAND_CLASSES  # one-to-one onto the 6 land classes
    assert seg.train_accuracy > 0.8
    ter, hgt = w.terrain[:, :128], w.height_m[:, :128]
    lab = seg.proba(ter, hgt).argmax(-1)
    assert ((lab == WATER) == (hgt <= 0)).all()
    land = hgt > 0
    # Mountains sit higher than plains on average; deserts are drier-looking (paler) than forests.
    mean_h = {c: hgt[(lab == c) & land].mean() for c in LAND_CLASSES if ((lab == c) & land).sum() > 20}
    m, pl = CLASS_NAMES.index("mountains"), CLASS_NAMES.index("plains")
    if m in mean_h and pl in mean_h:
        assert mean_h[m] > mean_h[pl]
    # Overriding a cluster changes what its pixels become.
    seg2 = fit_segmenter(crops, seed=0, per_crop=600, override={0: CLASS_NAMES.index("desert")})
    assert seg2.cluster_to_class[0] == CLASS_NAMES.index("desert")
    assert seg2.auto_assignment == seg.auto_assignment
