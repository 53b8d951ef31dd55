"""Ship a training run as the built-in default model: export, evaluate, record, install.

    python -m training.ship --run RUN_DIR --data DATA_DIR [--checkpoint CKPT] [--max-maps N] [--no-install]

1. exports the run's EMA generator + shadow generator (RUN_DIR/export/model.{safetensors,onnx}),
2. evaluates it on the data's validation split (training.evaluate) and runs the semantic checks
   (training.sanity), writing RUN_DIR/export/evaluation.json,
3. writes the headline figures into both files' provenance metadata (no re-export: the safetensors header
   and the ONNX metadata_props are rewritten, atomically), and
4. installs the pair as terrain_core/models/default.* (terrain_core.model_export.install_default).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from terrain_core.exits import UsageError, run_entry
from terrain_core.model_export import install_default
from terrain_core.model_format import METADATA_KEY
from terrain_core.output_set import OutputSet, check_output_dir, write_bytes_atomic, write_text_atomic


def headline(evaluation: dict[str, Any], sanity: dict[str, Any]) -> dict[str, Any]:
    """The few figures worth carrying inside the model file (the full report stays beside it)."""
    out: dict[str, Any] = {"split": evaluation.get("split"), "maps": evaluation.get("maps")}

    def scalars(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if isinstance(v, (int, float, str, bool)) or v is None}

    for key in ("segmentation", "shadow_leak", "height", "relief", "diversity"):
        sec = evaluation.get(key)
        if isinstance(sec, dict):
            out[key] = scalars(sec)
            # one level down too (mIoU of generated vs the ceiling, spectrum slopes), not per class
            for sub, val in sec.items():
                if isinstance(val, dict) and sub not in ("per_class", "per_class_iou") and scalars(val):
                    out[key][sub] = scalars(val)
    out["sanity"] = {k: bool(v) for k, v in sanity["checks"].items()}
    return out


def update_provenance(stem: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Merge ``extra`` into the provenance of ``stem``.safetensors and ``stem``.onnx; returns the metadata."""
    import onnx
    from safetensors.numpy import load_file, save_file

    from terrain_core.runtime import read_model_metadata

    st, ox = stem.with_suffix(".safetensors"), stem.with_suffix(".onnx")
    meta = read_model_metadata(st)
    meta.setdefault("provenance", {}).update(extra)
    text = json.dumps(meta, allow_nan=False)
    tensors = load_file(str(st))
    proto = onnx.load(str(ox))
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            entry.value = text
    with OutputSet(st.parent, what="model folder") as out:  # both files or neither
        save_file(tensors, str(out.path(st.name)), metadata={METADATA_KEY: text})
        onnx.save(proto, str(out.path(ox.name)))
        out.commit()
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ship", description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="training run folder")
    p.add_argument("--data", required=True, help="its dataset folder (the validation split is evaluated)")
    p.add_argument("--checkpoint", help="checkpoint to ship (default RUN/latest.pt)")
    p.add_argument("--max-maps", type=int, default=64, help="validation maps to evaluate")
    p.add_argument("--size", type=int, default=256, help="evaluation crop side (at most the maps' size)")
    p.add_argument("--no-export", action="store_true", help="use RUN/export/model.* as they are")
    p.add_argument("--no-install", action="store_true", help="stop before installing as the default")
    a = p.parse_args(argv)
    run, data = Path(a.run), Path(a.data)
    stem = run / "export" / "model"

    def body() -> int:
        # Before any work: the run folder must exist and its export folder (and, unless --no-install,
        # the built-in models folder) must be writable.
        if not run.is_dir():
            raise UsageError(f"--run {run}: no such run folder")
        check_output_dir(run / "export", "export folder")
        if not a.no_install:
            from terrain_core.runtime import MODELS_DIR

            check_output_dir(MODELS_DIR, "models folder")
        if not a.no_export:
            from training.train import main as train_main

            # the model files always include the ONNX one (runs often turn it off to save time)
            args = ["--out", str(run), "--data", str(data), "--export-only", "--set", "export_onnx=true"]
            if a.checkpoint:
                args += ["--checkpoint", a.checkpoint]
            code = train_main(args)
            if code != 0:
                return code
        from terrain_core.runtime import TerrainGenerator
        from training.evaluate import EvalOptions, evaluate
        from training.sanity import semantic_checks

        onnx = stem.with_suffix(".onnx")
        ev = evaluate(str(onnx), str(data), EvalOptions(split="val", size=a.size, max_maps=a.max_maps))
        sanity = semantic_checks(TerrainGenerator.load(onnx), size=max(a.size, 192))
        report = {"evaluation": ev, "sanity": sanity}
        write_text_atomic(run / "export" / "evaluation.json", json.dumps(report, indent=1, default=float))
        head = headline(ev, sanity)
        update_provenance(stem, {"evaluation": head})
        print(json.dumps(head, indent=1, default=float))
        if not a.no_install:
            paths = install_default(stem)
            checkpoint = Path(a.checkpoint) if a.checkpoint else None
            state = write_resume_state(run, checkpoint, DEFAULT_RESUME_STATE)
            print("installed " + ", ".join(str(x) for x in [*paths, state]))
        return 0

    from training.checkpoint import CheckpointError

    # ValueError: EvalError, ModelFileError, a missing export, bad data; the message says which.
    return run_entry(body, expected=(ValueError, CheckpointError))


DEFAULT_RESUME_STATE = Path(__file__).resolve().parent / "resume" / "default-state.safetensors"


def write_resume_state(run: Path, checkpoint: Path | None, dest: Path) -> Path:
    """The compact resume state (training.resume_state) of the shipped checkpoint, replacing ``dest``:
    what the next training machine continues from (``--resume-from``)."""
    from training import checkpoint as ckpt
    from training.resume_state import save_resume_state
    from training.train import RESUME_STATE, Trainer
    from training.train_config import load_config

    path = checkpoint or ckpt.latest_path(run)
    if checkpoint is None and not path.is_file() and (run / RESUME_STATE).is_file():
        # results brought back from scripts/train_gpu.sh: the run's own compact state, as it is
        from training.resume_state import read_resume_state

        read_resume_state(run / RESUME_STATE)  # a resume state, or ResumeStateError
        dest.parent.mkdir(parents=True, exist_ok=True)
        return write_bytes_atomic(dest, (run / RESUME_STATE).read_bytes())
    cfg = load_config(str(run / "config.toml"))
    trainer = Trainer(cfg.replace(vgg_download=False), log=lambda *a, **k: None)
    trainer.load_checkpoint(path)
    return save_resume_state(trainer, dest, history=trainer.campaign)


if __name__ == "__main__":
    sys.exit(main())
