"""build_dataset end to end on the procedural world: files, manifest round trip, split, shares, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from terrain_core.labels import CLASS_NAMES, labels_from_rgb
from training.build_dataset import BuildError, main, read_manifest
from training.data.dataset import TerrainDataset
from training.data.segment import boundary_density
from training.manifest import split_names


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("proc")
    args = ["--source", "procedural", "--out", str(out), "--count", "14", "--size", "64", "--seed", "2",
            "--world-rows", "192", "--val-share", "0.3", "--quiet"]  # fmt: skip
    assert main(args) == 0
    return out


def test_public_layout_and_extras(built):
    m = read_manifest(built)
    names = [c["name"] for c in m["crops"]]
    assert len(names) == 14
    for n in names:
        t = Image.open(built / f"{n}_t.png")
        h = Image.open(built / f"{n}_h.png")
        s = Image.open(built / f"{n}_i2.png")
        a = Image.open(built / f"{n}_albedo.png")
        assert t.size == h.size == s.size == a.size == (64, 64)
        assert t.mode == "RGB" and h.mode == "I;16" and s.mode == "RGB"
    assert (built / "contact_sheet.png").is_file()
    sheet = Image.open(built / "contact_sheet.png")
    assert sheet.size[0] > 3 * 128 and sheet.size[1] >= 128


def test_manifest_round_trip_and_contents(built):
    text = (built / "manifest.json").read_text()
    m = read_manifest(built)
    assert json.loads(text) == m and json.dumps(m, indent=1) == text
    assert m["source"] == "procedural" and m["seed"] == 2 and m["size"] == 64
    assert m["parameters"]["count"] == 14
    assert set(m["class_shares"]) == set(CLASS_NAMES)
    assert sum(m["class_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    lo, hi = m["height_range_m"]
    assert lo < 0 < hi
    assert m["segmentation"]["cluster_to_class"] and m["timings_s"]["total"] > 0


def test_split_by_region_never_overlaps(built):
    m = read_manifest(built)
    tr, va = split_names(built, "train"), split_names(built, "val")
    assert tr and va and not set(tr) & set(va) and len(tr) + len(va) == 14
    W = m["map_shape"][1]
    bw = W / m["split"]["bands"]
    for c in m["crops"]:
        a, b = c["col"] % W, (c["col"] + c["src_cols"]) % W
        # The crop's source columns lie inside its band, and the band's split is the crop's split.
        assert int(a // bw) == c["band"] and int((b - 1e-6) // bw) == c["band"]
        assert (c["band"] in m["split"]["val_bands"]) == (c["split"] == "val")


def test_labels_are_sane(built):
    m = read_manifest(built)
    lo, hi = m["height_range_m"]
    for c in m["crops"]:
        n = c["name"]
        lab = labels_from_rgb(np.asarray(Image.open(built / f"{n}_i2.png")))
        h = lo + np.asarray(Image.open(built / f"{n}_h.png")).astype(float) / 65535 * (hi - lo)
        # Water where the height is at sea level (blob smoothing may move the shore by a few pixels).
        assert ((lab == 0) == (h <= 1.0)).mean() > 0.9
        # Large smooth blobs: boundary length per area well below that of a noisy map (about 0.5+).
        assert boundary_density(lab) < 0.12
        shares = np.bincount(lab.ravel(), minlength=7) / lab.size
        assert shares == pytest.approx([c["class_shares"][k] for k in CLASS_NAMES], abs=1e-4)
        # The featureless-crop selection keeps land in every crop.
        assert (h > 1.0).mean() > 0.05


def test_dataset_loads_the_build(built):
    ds = TerrainDataset(built, crop=32, seed=0, names=split_names(built, "train"))
    item = ds[0]
    assert item["albedo"].shape == (3, 32, 32) and item["onehot"].shape == (7, 32, 32)


def test_same_seed_same_dataset_and_resume(built, tmp_path):
    # An interrupted build: half the crops on disk, no manifest. --resume keeps them and makes the rest.
    a = read_manifest(built)
    keep = [c["name"] for c in a["crops"][:7]]
    for n in keep:
        for sfx in ("_t.png", "_h.png", "_i2.png", "_albedo.png"):
            (tmp_path / f"{n}{sfx}").write_bytes((built / f"{n}{sfx}").read_bytes())
    args = ["--source", "procedural", "--out", str(tmp_path), "--count", "14", "--size", "64", "--seed", "2",
            "--world-rows", "192", "--val-share", "0.3", "--quiet", "--resume"]  # fmt: skip
    assert main(args) == 0
    b = read_manifest(tmp_path)
    assert b["resumed_crops"] == 7
    assert a["crops"] == b["crops"] and a["class_shares"] == b["class_shares"]
    n = a["crops"][10]["name"]  # made by the resumed run: identical bytes (same seed, same crops)
    for suffix in ("_t.png", "_h.png", "_i2.png"):
        assert (built / f"{n}{suffix}").read_bytes() == (tmp_path / f"{n}{suffix}").read_bytes()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--size", "100"], "multiple of 32"),
        (["--count", "0"], "--count must be >= 1"),
        (["--val-share", "1.5"], "--val-share"),
    ],
)
def test_bad_arguments_exit_with_a_message(tmp_path, capsys, extra, message):
    base = ["--source", "procedural", "--out", str(tmp_path / "o"), "--count", "4", "--size", "64", "--quiet"]
    assert main(base + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "manifest.json").exists()


def test_existing_dataset_is_not_overwritten_and_bad_override_file(built, tmp_path, capsys):
    assert (
        main(["--source", "procedural", "--out", str(built), "--count", "4", "--size", "64", "--quiet"]) == 2
    )
    assert "already holds a dataset" in capsys.readouterr().err
    bad = tmp_path / "c.json"
    bad.write_text('{"0": "swamp"}')
    args = ["--source", "procedural", "--out", str(tmp_path / "o"), "--count", "4", "--size", "64", "--quiet",
            "--classes", str(bad)]  # fmt: skip
    assert main(args) == 2
    assert "unknown class 'swamp'" in capsys.readouterr().err


def test_maps_source_with_8bit_heights(tmp_path):
    from training.data.procedural import WorldParams, make_world

    w = make_world(1, WorldParams(rows=192, cols=384, lat_range=(-90.0, 90.0), erosion_iterations=1))
    Image.fromarray(w.terrain).save(tmp_path / "terrain.png")
    h8 = np.clip(np.round(np.maximum(w.height_m, 0) / w.height_m.max() * 255), 0, 255).astype(np.uint8)
    Image.fromarray(h8).save(tmp_path / "height.png")
    out = tmp_path / "ds"
    t, h = str(tmp_path / "terrain.png"), str(tmp_path / "height.png")
    args = ["--source", "maps", "--terrain", t, "--height", h,
            "--height-range-m", "0", str(float(w.height_m.max())), "--out", str(out), "--count", "6",
            "--size", "64", "--quiet"]  # fmt: skip
    assert main(args) == 0
    m = read_manifest(out)
    assert m["source"] == "maps" and m["sources"][1]["bits"] == 8 and len(m["crops"]) == 6
    with pytest.raises(BuildError, match="not valid JSON"):
        (out / "manifest.json").write_text("{")
        read_manifest(out)
    assert main(["--source", "maps", "--out", str(tmp_path / "x"), "--quiet"]) == 2


def test_build_options_are_checked_and_record_what_shapes_the_data(tmp_path):
    from training.build_dataset import BuildOptions, options_from_args, parser

    with pytest.raises(BuildError, match="multiple of 32"):
        BuildOptions("procedural", tmp_path, size=48)
    with pytest.raises(BuildError, match="unknown --source"):
        BuildOptions("moon", tmp_path)
    argv = ["--source", "maps", "--out", str(tmp_path), "--terrain", "t.png", "--height", "h.png",
            "--lat-range", "-60", "60", "--quiet", "--resume"]  # fmt: skip
    opts = options_from_args(parser().parse_args(argv))
    assert opts.out == tmp_path and opts.lat_range == (-60.0, 60.0) and opts.height_range_out is None
    recorded = opts.manifest_parameters()
    # Where and how the build ran, and options left unset, are not part of what the data is.
    assert not {"out", "overwrite", "quiet", "resume", "height_range_out", "world_rows"} & set(recorded)
    assert list(recorded)[:4] == ["source", "count", "size", "seed"]  # the command line's order
    assert recorded["terrain"] == "t.png" and recorded["lat_range"] == (-60.0, 60.0)
