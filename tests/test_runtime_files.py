"""Model files that are not valid exports give ModelFileError with a clear message; export is atomic.

Real files in tmp_path: one safetensors export of the 'tiny' preset (no ONNX export here: fast), and
variants of it broken in one way each; ONNX files built with onnx.helper.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402

from terrain_core.config import ShadowConfig, preset  # noqa: E402
from terrain_core.model_export import export_model  # noqa: E402
from terrain_core.model_format import METADATA_KEY, build_metadata  # noqa: E402
from terrain_core.nn.inference import InferenceNet  # noqa: E402
from terrain_core.runtime import ModelFileError, TerrainGenerator, read_model_metadata  # noqa: E402

GEN, SHADOW = preset("tiny"), ShadowConfig()


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    net = InferenceNet(GEN, SHADOW)
    st, ox = export_model(net, tmp_path_factory.mktemp("good") / "tiny", onnx=False)
    assert ox is None and st.name == "tiny.safetensors"
    return st


def _meta_of(path: Path) -> dict:
    return read_model_metadata(path)


def _rewrite(src: Path, dst: Path, *, meta=None, meta_text=None, tensors=None) -> Path:
    """Copy a safetensors export, replacing its metadata and/or tensors."""
    t = load_file(str(src)) if tensors is None else tensors
    if meta_text is None:
        meta_text = json.dumps(_meta_of(src) if meta is None else meta)
    save_file(t, str(dst), metadata={METADATA_KEY: meta_text} if meta_text != "" else None)
    return dst


def _expect(path: Path, *words: str) -> str:
    with pytest.raises(ModelFileError) as e:
        TerrainGenerator.load(path)
    msg = str(e.value)
    assert str(path) in msg, msg  # says which file
    for w in words:
        assert w.lower() in msg.lower(), msg
    assert len(msg) < 700, msg  # a sentence, not a dump
    return msg


def test_the_good_file_loads(good):
    g = TerrainGenerator.load(good)
    assert g.runtime == "torch" and g.config == GEN and g.shadow_config == SHADOW


def test_exported_files_get_the_usual_permissions(good):
    mask = os.umask(0)
    os.umask(mask)
    assert good.stat().st_mode & 0o777 == 0o666 & ~mask  # not a temp file's 0600


def test_missing_empty_and_wrong_suffix(tmp_path):
    _expect(tmp_path / "nope.safetensors", "not found")
    _expect(tmp_path / "nope.onnx", "not found")
    for suffix in (".safetensors", ".onnx"):
        p = tmp_path / f"empty{suffix}"
        p.write_bytes(b"")
        _expect(p, "empty")
    p = tmp_path / "model.pt"
    p.write_bytes(b"\x80\x04K\x01.")  # a pickle: refused by its name, never opened
    _expect(p, "unknown model file type")
    (tmp_path / "dir.onnx").mkdir()
    _expect(tmp_path / "dir.onnx", "not a file")


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(0)
    for suffix in (".safetensors", ".onnx"):
        p = tmp_path / f"random{suffix}"
        p.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        _expect(p, "not a")


def test_truncated_and_non_json_safetensors(tmp_path, good):
    data = good.read_bytes()
    p = tmp_path / "short.safetensors"
    p.write_bytes(data[:5])
    _expect(p, "truncated")
    p.write_bytes(data[: len(data) // 2])  # header intact, tensor data cut off
    _expect(p, "out of range")
    n = int.from_bytes(data[:8], "little")
    p.write_bytes(data[:8] + b"{" * n + data[8 + n :])
    _expect(p, "not JSON")


def test_safetensors_without_our_metadata(tmp_path, good):
    p = _rewrite(good, tmp_path / "plain.safetensors", meta_text="")
    _expect(p, "no terrain_core metadata", "export_model")


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda m: m.update(format="something-else"), ["format"]),
        (lambda m: m.update(format_version=99), ["newer", "update terrain_core"]),
        (lambda m: m["generator"].update(conv_type="magic"), ["config", "conv_type"]),
        (lambda m: m["generator"].update(surprise=1), ["config", "surprise"]),
        (lambda m: m.pop("shadow"), ["config"]),
        (lambda m: m["classes"][2].update(rgb=[0, 0, 0]), ["class table"]),
        (lambda m: m.update(height_range_m=[5, 1]), ["height_range_m"]),
        (lambda m: m.update(height_range_m="tall"), ["height_range_m"]),
    ],
)
def test_wrong_metadata(tmp_path, good, change, words):
    meta = _meta_of(good)
    change(meta)
    _expect(_rewrite(good, tmp_path / "bad.safetensors", meta=meta), *words)


def test_metadata_that_is_not_json(tmp_path, good):
    _expect(_rewrite(good, tmp_path / "bad.safetensors", meta_text="{not json"), "not valid JSON")
    _expect(_rewrite(good, tmp_path / "bad2.safetensors", meta_text="[1, 2]"), "not a JSON object")


def test_wrong_keys_and_shapes(tmp_path, good):
    tensors = load_file(str(good))
    name = "generator.to_out.weight"
    assert name in tensors
    renamed = dict(tensors)
    renamed["generator.to_out.weight_old"] = renamed.pop(name)
    msg = _expect(_rewrite(good, tmp_path / "keys.safetensors", tensors=renamed), "missing", "unexpected")
    assert name in msg
    reshaped = dict(tensors)
    reshaped[name] = np.zeros((5, *tensors[name].shape[1:]), np.float32)
    _expect(_rewrite(good, tmp_path / "shape.safetensors", tensors=reshaped), "wrong shapes", name)
    # A model of another preset under this preset's metadata: every shape disagrees, the list is cut short.
    torch.manual_seed(0)
    other = {k: v.numpy() for k, v in InferenceNet(preset("small"), SHADOW).state_dict().items()}
    msg = _expect(_rewrite(good, tmp_path / "other.safetensors", tensors=other), "wrong shapes", "more")
    inty = dict(tensors)
    inty[name] = tensors[name].astype(np.int32)
    _expect(_rewrite(good, tmp_path / "int.safetensors", tensors=inty), "non-float")


def _tiny_onnx(path: Path, meta: dict | None, input_names=("x",)) -> Path:
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in input_names]
    outputs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1]) for i in range(len(inputs))]
    nodes = [helper.make_node("Identity", [n], [f"y{i}"]) for i, n in enumerate(input_names)]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", 18)]
    )
    model.ir_version = 8
    if meta is not None:
        helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.save_model(model, str(path))
    return path


def test_onnx_without_our_metadata(tmp_path):
    _expect(_tiny_onnx(tmp_path / "other.onnx", None), "no terrain_core metadata")


def test_onnx_whose_graph_does_not_match_its_metadata(tmp_path):
    meta = build_metadata(GEN, SHADOW, name="x")
    _expect(_tiny_onnx(tmp_path / "mismatch.onnx", meta, ("a", "b")), "do not match")


def test_onnx_with_bad_metadata(tmp_path):
    meta = build_metadata(GEN, SHADOW, name="x")
    meta["format_version"] = "one"
    _expect(_tiny_onnx(tmp_path / "badmeta.onnx", meta), "format_version")


def test_export_is_atomic_and_leaves_no_temp_files(tmp_path, good):
    torch.manual_seed(1)
    net = InferenceNet(GEN, SHADOW)
    stem = tmp_path / "out" / "m"
    stem.parent.mkdir()
    old = {p: b"previous " + p.encode() for p in ("m.safetensors", "m.onnx")}
    for name, content in old.items():
        (stem.parent / name).write_bytes(content)
    # Fails in the ONNX step, after the safetensors file was written to its temporary name.
    with pytest.raises(ValueError, match="example_size"):
        export_model(net, stem, example_size=(33, 64))
    # Fails before writing: metadata that is not JSON.
    with pytest.raises(ValueError, match="JSON"):
        export_model(net, stem, metadata={"provenance": {"when": object()}}, onnx=False)
    with pytest.raises(ValueError, match="unknown metadata keys"):
        export_model(net, stem, metadata={"steps": 3}, onnx=False)
    assert sorted(os.listdir(stem.parent)) == sorted(old)
    for name, content in old.items():
        assert (stem.parent / name).read_bytes() == content
    # And a good export replaces the pair.
    st, ox = export_model(net, stem, onnx=False)
    assert st.read_bytes()[:8] != b"previous" and TerrainGenerator.load(st).name == "m"


def test_export_accepts_a_generator_shadow_pair_and_explicit_paths(tmp_path):
    torch.manual_seed(2)
    net = InferenceNet(GEN, SHADOW)
    st, _ = export_model(
        (net.generator, net.shadow),
        (tmp_path / "a.safetensors", tmp_path / "a.onnx"),
        gen_config=GEN,
        shadow_config=SHADOW,
        onnx=False,
        metadata={"name": "pair", "height_range_m": (-50, 450), "provenance": {"steps": 0}},
    )
    g = TerrainGenerator.load(st)
    assert g.name == "pair" and g.height_range_m == (-50.0, 450.0)
    assert g.info["provenance"] == {"steps": 0} and g.untrained is False
    # A stand-in exported from untrained weights is flagged as such when loaded.
    st, _ = export_model(net, tmp_path / "c", onnx=False, metadata={"provenance": {"untrained": True}})
    assert TerrainGenerator.load(st).info["untrained"] is True
    loaded = g._backend.net.state_dict()
    for k, v in net.state_dict().items():
        assert torch.equal(loaded[k], v), k
    with pytest.raises(ValueError, match="configs"):
        export_model((net.generator, net.shadow), tmp_path / "b", onnx=False)  # a pair needs its configs
