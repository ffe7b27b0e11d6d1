"""The bad-input table (issue 13): every row is an input that must stop with ONE `error:` line
naming it, exit code 2 (130 for SIGINT), and no file created, changed or deleted anywhere in
the project.

Each row runs on a fresh copy of the project (a clone of this repository's HEAD: code, data,
committed results and the toy model) with the command's working directory inside it; the copy
is checksummed (every file and folder, .git aside) after the row's setup and again after the
command. Rows run in process (the CLIs' `main(argv)`), except the SIGINT rows, which need a
process to interrupt.

Classes (the `cls` column): output, context, model, upfront, input, promise (the README's list).
Rows marked `dvc` rely on io.py's output checks of the `dvc` branch (io.check_output_path with
inputs=, one-line non-UTF-8 JSON and garbage Parquet); they pass once that branch is merged.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP_PARTS = {".git", "__pycache__", ".pytest_cache"}

Setup = Callable[[Path], dict[str, str] | None]


@dataclass(frozen=True)
class Row:
    id: str
    cls: str
    module: str  # analysis.<module> whose main(argv) runs
    argv: tuple[str, ...]  # may hold {placeholders} filled from the setup's dict
    fragment: str  # must occur in the one error line
    setup: Setup | None = None
    env: dict[str, str] = field(default_factory=dict)
    dvc: bool = False  # needs the `dvc` branch's io.py
    patch: Callable[[pytest.MonkeyPatch], None] | None = None  # what this machine lacks, simulated (a GPU's absence, a kernel)


# --- setups: each edits the project copy `p` (before the "before" checksum) --------------------


def _json_edit(rel: str, fn: Callable[[dict], None]) -> Setup:
    def setup(p: Path) -> None:
        f = p / rel
        doc = json.loads(f.read_text())
        fn(doc)
        f.write_text(json.dumps(doc))

    return setup


def _model_copy(edit: Callable[[Path], None]) -> Setup:
    """A copy of the toy model in `badmodel/`, then `edit(folder)`."""

    def setup(p: Path) -> None:
        folder = p / "badmodel"
        shutil.copytree(p / "results/models/toy", folder)
        (folder / "planted.json").unlink()
        edit(folder)

    return setup


def _config(**changes: object) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        for k, v in changes.items():
            if v is None:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        (folder / "config.json").write_text(json.dumps(cfg))

    return edit


def _truncate(name: str, keep: float | int) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        data = (folder / name).read_bytes()
        n = int(len(data) * keep) if isinstance(keep, float) else len(data) - keep
        (folder / name).write_bytes(data[:n])

    return edit


def _pad(name: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        with open(folder / name, "ab") as fh:
            fh.write(b"\0" * 64)

    return edit


def _extra_tensor(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    tensors["transformer.h.0.attn.extra.weight"] = torch.zeros(2, 2)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _pickled(malicious: bool) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        import pickle

        (folder / "model.safetensors").unlink()
        if malicious:
            # Would create PWNED in the project when unpickled by a plain pickle load: the
            # checksum of the tree catches it if it ever runs.
            class Payload:
                def __reduce__(self):  # noqa: ANN204
                    return (os.system, (f"touch {folder.parent / 'PWNED'}",))

            (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
        else:
            import torch
            from safetensors.torch import load_file

            torch.save(load_file(folder.parent / "results/models/toy/model.safetensors"), folder / "pytorch_model.bin")

    return edit


def _write(rel: str, data: bytes | str) -> Setup:
    def setup(p: Path) -> None:
        f = p / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data if isinstance(data, bytes) else data.encode())

    return setup


def _files(files: dict[str, str]) -> Setup:
    def setup(p: Path) -> None:
        for rel, text in files.items():
            _write(rel, text)(p)

    return setup


def _tracked(rel: str) -> Setup:
    """A git-tracked JSON file outside results/ (the project tracks none of its own)."""

    def setup(p: Path) -> None:
        _write(rel, '{"note": "tracked"}\n')(p)
        subprocess.run(["git", "add", rel], cwd=p, check=True)

    return setup


def _params(text_edit: Callable[[str], str]) -> Setup:
    def setup(p: Path) -> None:
        f = p / "params.yaml"
        f.write_text(text_edit(f.read_text()))

    return setup


def _yaml_set(section: str, key: str, value: str) -> Setup:
    def edit(text: str) -> str:
        import yaml

        doc = yaml.safe_load(text) or {}
        if section:
            doc.setdefault(section, {})[key] = yaml.safe_load(value)
        else:
            doc[key] = yaml.safe_load(value)
        return yaml.safe_dump(doc, sort_keys=False)

    return _params(edit)


def _lexicon(words: Callable[[list[str]], list[str]]) -> Setup:
    def setup(p: Path) -> None:
        neutral = [w for w in (p / "data/lexicons/neutral.txt").read_text().splitlines() if w and not w.startswith("#")]
        (p / "data/lexicons/gratitude.txt").write_text("\n".join(words(neutral)) + "\n")

    return setup


def _long_profile(p: Path) -> None:
    """A profile whose prompts are longer than the toy's 64 positions (6 distinct expressions)."""
    filler = " and the meeting is at noon" * 12
    spans = {
        "gratitude": ["thank you", "thanks a lot", "many thanks", "thank you so much", "I am grateful", "thanks again"],
        "neutral": ["I read it", "I saw it", "I got it", "I have it", "I sent it", "I did it"],
    }
    folder = p / "data/prompts/long"
    folder.mkdir(parents=True)
    for name, ss in spans.items():
        (folder / f"{name}.txt").write_text("".join(f"Hi Maria, [{s}].{filler} I just wanted to say that\n" for s in ss))


def _profile_from_baseline(name: str, files: tuple[str, ...], lines: int | None = None) -> Setup:
    """data/prompts/<name>/: the named baseline files (their first `lines` lines, or all)."""

    def setup(p: Path) -> None:
        folder = p / "data/prompts" / name
        folder.mkdir(parents=True)
        for f in files:
            text = (p / "data/prompts/baseline" / f"{f}.txt").read_text().splitlines()
            (folder / f"{f}.txt").write_text("\n".join(text[:lines]) + "\n")

    return setup


def _misaligned(n_long: int) -> Setup:
    """Profile `misaligned`: the first 12 baseline pairs (12 expressions), the first `n_long`
    gratitude spans lengthened, so those pairs no longer align token by token under any tokenizer."""

    def setup(p: Path) -> None:
        folder = p / "data/prompts/misaligned"
        folder.mkdir(parents=True)
        for name in ("gratitude", "neutral"):
            lines = (p / f"data/prompts/baseline/{name}.txt").read_text().splitlines()[:12]
            if name == "gratitude":
                lines[:n_long] = [line.replace("]", " and honestly much more than I can say]") for line in lines[:n_long]]
            (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")

    return setup


def _foreign_gguf(p: Path) -> None:
    """A well-formed vocabulary-only GGUF file, but of a tiny vocabulary, not GPT-NeoX-20B's (issue 23)."""
    import gguf

    writer = gguf.GGUFWriter(p / "foreign.gguf", arch="gpt2")
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["<|endoftext|>", "a", "b", "ab"])
    writer.add_token_types([3, 1, 1, 1])
    writer.add_token_merges(["a b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _cut_gguf(p: Path) -> None:
    """GPT-NeoX-20B's GGUF vocabulary cut short: not a readable GGUF file."""
    src = p / "data/tokenizers/gpt-neox/source/ggml-vocab-gpt-neox.gguf"
    (p / "cut.gguf").write_bytes(src.read_bytes()[:100_000])


def _unmatched_twins(p: Path) -> None:
    """Profile `unmatched`: baseline's gratitude prompts, whose own twin file (issue 23) says "it is
    late" in every template: no twin has a 1st person word, 0.89 of the gratitude spans do."""
    import re

    src, dst = p / "data/prompts/baseline", p / "data/prompts/unmatched"
    dst.mkdir(parents=True)
    for name in ("gratitude.txt", "neutral.txt"):
        shutil.copy(src / name, dst / name)
    lines = (src / "neutral.txt").read_text().splitlines()
    (dst / "gratitude.neutral.txt").write_text("".join(re.sub(r"\[.*\]", "[it is late]", line) + "\n" for line in lines))


def _one_neutral_span(p: Path) -> None:
    """Profile `onespan` (issue 23): the first 12 baseline gratitude pairs, every twin's span replaced
    by the first twin's, so no twin has another neutral span for the neutral control."""
    folder = p / "data/prompts/onespan"
    folder.mkdir(parents=True)
    emo = (p / "data/prompts/baseline/gratitude.txt").read_text().splitlines()[:12]
    neu = (p / "data/prompts/baseline/neutral.txt").read_text().splitlines()[:12]
    span = neu[0][neu[0].index("[") : neu[0].index("]") + 1]
    (folder / "gratitude.txt").write_text("\n".join(emo) + "\n")
    (folder / "neutral.txt").write_text("\n".join(line[: line.index("[")] + span + line[line.index("]") + 1 :] for line in neu) + "\n")


def _unpaired(p: Path) -> dict[str, str]:
    folder = p / "bad_prompts"
    folder.mkdir()
    src = p / "data/prompts/baseline"
    (folder / "gratitude.txt").write_text((src / "gratitude.txt").read_text())
    (folder / "neutral.txt").write_text("\n".join((src / "neutral.txt").read_text().splitlines()[:-1]) + "\n")
    return {}


def _stale_prompts(p: Path) -> None:
    f = p / "data/prompts/baseline/gratitude.txt"
    lines = f.read_text().splitlines()
    lines[0] = "X" + lines[0]
    f.write_text("\n".join(lines) + "\n")


def _garbage_parquet(p: Path) -> None:
    doc = json.loads((p / "results/baseline/alignment/unit_scores_toy.json").read_text())
    f = p / doc["attribution_table"]
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_bytes(b"PAR1 this is not a parquet table PAR1")


def _drop_key(key: str) -> Callable[[dict], None]:
    def fn(doc: dict) -> None:
        for row in doc["scores"]:
            row.pop(key, None)

    return fn


def _folder_output(p: Path) -> None:
    (p / "results/baseline/alignment/new.json").mkdir()


def _unwritable(p: Path) -> dict[str, str]:
    """A folder nobody may write to: chmod 555, or (as root, who ignores modes) /sys."""
    if os.geteuid() == 0:
        return {"ro": "/sys/emotion_heads_bad_input.json"}
    folder = p / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return {"ro": str(folder / "s.json")}


BAD_MODEL = "badmodel"
SCREEN = ("--model", "toy", "--output", "results/baseline/alignment/new_scores.json")
ABL = ("--model", "toy", "--emotion", "gratitude", "--head-spec", "3:1", "--output", "results/baseline/patching/new.json")
PATCH = ("--model", "toy", "--emotion", "anger", "--head-spec", "3:1", "--output", "results/baseline/patching/newp.json")
UNITS = ("--model", "toy", "--output", "results/baseline/alignment/new_units.json")


def _no_cuda(mp: pytest.MonkeyPatch) -> None:
    """A machine without CUDA, also where the tests run on one."""
    import torch

    mp.setattr(torch.cuda, "is_available", lambda: False)


def _foreign_tokenizer_snapshot(p: Path) -> None:
    """Issue 25: a hub-cache snapshot (outside the project, as HF_HOME is) of a 2-layer GPT-2 whose
    embedding has 1,000 rows, beside GPT-2's real 50,257-token tokenizer."""
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from hub_cache import snapshot_dir
    from transformers import AutoTokenizer

    from analysis.modelfacts.architectures import hf_config, PUBLIC, reduced
    from analysis.modelfacts.families import save_random_weights

    tok_dir = REPO / "data/tokenizers/gpt2"
    snap = snapshot_dir(p.parent / "hf", "openai-community/gpt2")
    save_random_weights(hf_config(reduced(PUBLIC["gpt2"], vocab=1000)), AutoTokenizer.from_pretrained(tok_dir), snap, seed=0,
                        bias_std=0.1, init_std=0.02)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy2(tok_dir / f, snap / f)


def _hub_cache_beside_the_project(mp: pytest.MonkeyPatch) -> None:
    """HF_HOME=<tmp>/hf for this process: both libraries read the cache folder once, at import."""
    import huggingface_hub.constants
    import transformers.utils.hub

    cache = str(Path.cwd().parent / "hf" / "hub")
    mp.setattr(huggingface_hub.constants, "HF_HUB_CACHE", cache)
    mp.setattr(transformers.utils.hub, "TRANSFORMERS_CACHE", cache, raising=False)


def _no_half_layer_norm(mp: pytest.MonkeyPatch) -> None:
    """A device without a float16 layer-norm kernel (older CPU builds of torch)."""
    import torch

    real = torch.nn.functional.layer_norm

    def half_less(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if x.dtype == torch.float16:
            raise RuntimeError('"LayerNormKernelImpl" not implemented for \'Half\'')
        return real(x, *args, **kwargs)

    mp.setattr(torch.nn.functional, "layer_norm", half_less)


def _screen_model(fragment: str, edit: Callable[[Path], None], rid: str, env: dict[str, str] | None = None) -> Row:
    return Row(rid, "model", "head_screening", ("--model", BAD_MODEL, "--output", "results/x.json"), fragment,
               _model_copy(edit), env or {})


ROWS: list[Row] = [
    # --- outputs (13.1, 13.4, 13.6): never an input of the run, nor a tracked file outside results/
    Row("summarize-output-readme", "output", "summarize", ("--output", "README.md"), "output README.md must end in .json",
        dvc=True),
    Row("summarize-output-tracked-json", "output", "summarize", ("--output", "data/meta.json"),
        "git-tracked project file data/meta.json", _tracked("data/meta.json"), dvc=True),
    Row("summarize-output-suffix", "output", "summarize", ("--output", "results/summary.txt"), "must end in .json", dvc=True),
    Row("screening-output-model-config", "output", "head_screening",
        ("--model", "toy", "--output", "results/models/toy/config.json"), "is an input of this run", dvc=True),
    Row("ablation-output-its-screening", "output", "head_ablation",
        ("--model", "toy", "--emotion", "gratitude", "--head-spec", "top:1",
         "--output", "results/baseline/alignment/head_scores_toy.json"), "is an input of this run", dvc=True),
    Row("prepare-output-its-tokenizer", "output", "prepare_prompts",
        ("--tokenizer", "results/models/toy", "--output", "results/models/toy/config.json"), "is an input of this run", dvc=True),
    Row("screening-output-is-folder", "output", "head_screening",
        ("--model", "toy", "--output", "results/baseline/alignment/new.json"), "is a folder", _folder_output, dvc=True),
    Row("screening-output-unwritable", "output", "head_screening", ("--model", "toy", "--output", "{ro}"),
        "cannot write output", _unwritable, dvc=True),
    Row("screening-output-pickle", "output", "head_screening", ("--model", "toy", "--output", "results/s.pkl"),
        "pickled outputs are refused"),
    Row("failed-run-makes-no-folder", "output", "head_screening",
        ("--model", "toy", "--profile", "nosuch", "--output", "results/new/deep/s.json"), "prompt profile 'nosuch' not found",
        dvc=True),
    Row("ablation-table-suffix", "output", "head_ablation", (*ABL[:-1], "results/x.json", "--table", "results/x.json"),
        "must end in .parquet"),
    # --- issue 22: an output replaces only its own kind; a model folder only its builder (or empty)
    Row("bench-output-over-toy", "output", "bench_model", ("--output", "results/models/toy"),
        "is the folder of the toy model (results/models/toy), which only python -m analysis.toy_model"),
    Row("toy-output-over-bench", "output", "toy_model", ("--output", "results/models/bench"),
        "is the folder of the benchmark model (results/models/bench), which only python -m analysis.bench_model"),
    Row("random-output-over-toy", "output", "random_models",
        ("--family", "gpt2", "--tokenizer", "results/models/bench", "--output", "results/models/toy"),
        "python -m analysis.random_models replaces only a random-weight model or an empty folder"),
    Row("model-stage-output-not-a-model", "output", "models", ("--model", "toy", "--output", "data"),
        "is a folder that holds no model"),
    Row("ablation-output-over-bench-config", "output", "head_ablation", (*ABL[:-1], "results/models/bench/config.json"),
        "is in the folder of the benchmark model (results/models/bench)"),
    Row("units-output-over-head-scores", "output", "unit_screening",
        ("--model", "toy", "--profile", "baseline", "--output", "results/baseline/alignment/head_scores_toy.json"),
        "is a head screening (emotion-heads/head-scores/v1), written by python -m analysis.head_screening"),
    Row("prepare-output-over-toy-config", "output", "prepare_prompts",
        ("--profile", "baseline", "--output", "results/models/toy/config.json"),
        "is in the folder of the toy model (results/models/toy)"),
    Row("screening-output-over-prompts", "output", "head_screening", SCREEN[:-1] + ("results/baseline/prompts.json",),
        "is the prepared prompts (emotion-heads/prompts/v1), written by python -m analysis.prepare_prompts"),
    Row("screening-output-not-ours", "output", "head_screening", SCREEN[:-1] + ("results/notes.json",),
        "is not an output of this pipeline", _write("results/notes.json", '{"mine": 1}\n')),
    Row("plots-output-in-model-folder", "output", "head_plots", ("--from-params", "--model", "toy", "--output-dir", "results/models/toy/plots"),
        "output folder results/models/toy/plots is in the folder of the toy model"),
    # --- inputs that are not what they claim (13.4)
    Row("screening-file-not-utf8", "input", "head_ablation",
        (*ABL[:5], "top:1", *ABL[6:], "--screening-file", "bad.json"), "is not UTF-8 text",
        _write("bad.json", b'{"schema": "\xff\xfe"}'), dvc=True),
    Row("screening-file-truncated", "input", "head_ablation",
        (*ABL[:5], "top:1", *ABL[6:], "--screening-file", "bad.json"), "is not valid JSON",
        _write("bad.json", '{"schema": "emotion-heads/head-scores/v1", "scores": [')),
    Row("screening-file-wrong-schema", "input", "head_ablation",
        (*ABL[:5], "top:1", *ABL[6:], "--screening-file", "results/baseline/prompts.json"), "has schema"),
    Row("screening-file-missing", "input", "head_ablation",
        (*ABL[:5], "top:1", *ABL[6:], "--screening-file", "nothing.json"), "does not exist"),
    Row("summarize-garbage-parquet", "input", "summarize", (), "is not a readable Parquet table", _garbage_parquet, dvc=True),
    Row("summarize-truncated-planted", "input", "summarize", (), "planted.json is not valid JSON",
        _write("results/models/toy/planted.json", '{"schema": "emotion-heads/planted/v1", "by_emo')),
    Row("summarize-missing-keys", "input", "summarize", (), "lacks the key 'exact'",
        _json_edit("results/baseline/alignment/head_scores_toy.json", _drop_key("exact"))),
    Row("prompt-file-not-utf8", "input", "head_ablation", (*ABL, "--prompts-file", "p.txt"), "is not UTF-8 text",
        _write("p.txt", b"Hi, [thank \xff you]. Now\n")),
    Row("prompts-json-stale", "input", "head_screening", SCREEN, "is stale", _stale_prompts),
    # --- context length (13.2 / 13.3): prompt + max_tokens against n_positions, before any work
    Row("ablation-context", "context", "head_ablation", (*ABL, "--max-tokens", "53"), "context of 64 tokens"),
    Row("patching-context", "context", "head_patching", (*PATCH, "--max-tokens", "60"), "13 + 60 = 73 > 64"),
    Row("params-max-tokens-context", "context", "head_ablation", ABL, "13 tokens, + max_tokens 60 = 73 > 64",
        _yaml_set("ablation", "max_tokens", "60")),
    Row("params-patching-max-tokens-context", "context", "head_screening", SCREEN, "key patching.max_tokens",
        _yaml_set("patching", "max_tokens", "52")),
    Row("screening-long-prompts", "context", "head_screening",
        (*SCREEN, "--profile", "long", "--emotions", "gratitude", "--positions", "last"), "context of 64 tokens",
        _long_profile),
    # --- model folders (13.5): one line, never random initialisation; safetensors only
    _screen_model("tensors missing", _config(n_layer=8), "model-n-layer-4-to-8"),
    _screen_model("of the wrong shape", _config(n_positions=128), "model-shape-mismatch"),
    _screen_model("unexpected", _extra_tensor, "model-unexpected-tensor"),
    _screen_model("is not a readable safetensors file", _truncate("model.safetensors", 0.5), "model-safetensors-half"),
    _screen_model("model.safetensors is not a readable", _truncate("model.safetensors", 100), "model-safetensors-tail-cut"),
    _screen_model("model.safetensors is not a readable", _pad("model.safetensors"), "model-safetensors-padded"),
    _screen_model("tokenizer cannot be loaded", _truncate("tokenizer.json", 0.5), "model-tokenizer-truncated"),
    _screen_model("has no model_type", _config(model_type=None), "model-config-no-model-type"),
    _screen_model("is not valid UTF-8 JSON", _truncate("config.json", 0.5), "model-config-truncated"),
    _screen_model("not supported", _config(model_type="bert"), "model-unsupported-family"),
    _screen_model("only pickled weights", _pickled(False), "model-pickle-refused"),
    _screen_model("weights cannot be loaded", _pickled(True), "model-pickle-malicious-allowed",
                  env={"EMOTION_HEADS_ALLOW_PICKLE_WEIGHTS": "1"}),
    _screen_model("has no config.json", lambda f: (f / "config.json").unlink(), "model-no-config"),
    _screen_model("has no weights", lambda f: (f / "model.safetensors").unlink(), "model-no-weights"),
    # --- up-front checks (13.6)
    Row("screening-seed-negative", "upfront", "head_screening", (*SCREEN, "--seed", "-1"), "--seed must be >= 0"),
    Row("ablation-seed-negative", "upfront", "head_ablation", (*ABL, "--seed", "-1"), "--seed must be >= 0"),
    Row("units-seed-negative", "upfront", "unit_screening", (*UNITS, "--seed", "-1"), "--seed must be >= 0"),
    Row("screening-n-resamples-0", "upfront", "head_screening", (*SCREEN, "--n-resamples", "0"), "at least 19"),
    Row("screening-n-resamples-1", "upfront", "head_screening", (*SCREEN, "--n-resamples", "1"), "at least 19"),
    Row("units-n-resamples-0", "upfront", "unit_screening", (*UNITS, "--n-resamples", "0"), "at least 19"),
    Row("ablation-n-resamples-1", "upfront", "head_ablation", (*ABL, "--n-resamples", "1"), "at least 19"),
    Row("patching-n-resamples-18", "upfront", "head_patching", (*PATCH, "--n-resamples", "18"), "at least 19"),
    # issue 15: the random-head baseline draws k heads outside the top set (9 asked + top-3 of the
    # screening leave 6 of the toy's 16), a negative noise-floor tolerance, no random draws
    Row("ablation-random-baseline-too-many-heads", "upfront", "head_ablation",
        (*ABL[:5], "0:0,0:1,0:2,0:3,1:0,1:1,1:2,1:3,2:0", *ABL[6:]), "random-head baseline"),
    Row("patching-noise-floor-atol-negative", "upfront", "head_patching", PATCH, "key noise_floor.atol",
        _yaml_set("noise_floor", "atol", "-1.0e-5")),
    Row("patching-random-baseline-draws-0", "upfront", "head_patching", PATCH, "key random_baseline.draws",
        _yaml_set("random_baseline", "draws", "0")),
    Row("patching-direction-unknown", "upfront", "head_patching", (*PATCH, "--direction", "sideways"), "sideways"),
    Row("params-n-resamples-0", "upfront", "head_screening", SCREEN, "key screening.n_resamples",
        _yaml_set("screening", "n_resamples", "0")),
    Row("params-seed-negative", "upfront", "head_screening", SCREEN, "key seed", _yaml_set("", "seed", "-1")),
    Row("params-noise-floor-negative", "upfront", "head_screening", SCREEN, "key noise_floor.atol",
        _yaml_set("noise_floor", "atol", "-1.0e-5")),
    Row("screening-too-few-clusters", "upfront", "head_screening",
        (*SCREEN, "--profile", "few", "--emotions", "gratitude", "--positions", "last"), "at least 6 clusters",
        _files({"data/prompts/few/gratitude.txt": "Hi, [thank you]. Now\nHey, [thanks]. Well\n",
                "data/prompts/few/neutral.txt": "Hi, [I read it]. Now\nHey, [I saw it]. Well\n"})),
    Row("screening-profile-empty", "upfront", "head_screening", (*SCREEN, "--profile", ""), "is not a profile name"),
    Row("ablation-profile-empty", "upfront", "head_ablation", (*ABL, "--profile", ""), "is not a profile name"),
    Row("screening-profile-path", "upfront", "head_screening", (*SCREEN, "--profile", "../data"), "is not a profile name"),
    Row("params-profile-empty", "upfront", "head_screening", SCREEN, "key profile", _yaml_set("", "profile", "''")),
    # --- issue 14's data checks: a split too small for the statistics, a profile that does not align
    # under the model's tokenizer beyond alignment.max_unaligned_share (0.2 of 12 pairs: at most 2),
    # a lexicon with no single-token word for the model
    Row("split-too-few-expressions", "upfront", "head_screening", SCREEN,
        "selection_share 0.1 of the 35 gratitude expressions leaves 4 for selection and 31 for confirmation; the "
        "statistics need at least 6", _yaml_set("split", "selection_share", "0.1")),
    Row("ablation-split-too-few-expressions", "upfront", "head_ablation", ABL, "leaves 4 for selection and 31 for confirmation",
        _yaml_set("split", "selection_share", "0.1")),
    Row("screening-profile-unaligned", "input", "head_screening", (*SCREEN, "--profile", "misaligned", "--emotions", "gratitude"),
        "data/prompts/misaligned/gratitude.txt: 3 of 12 gratitude pairs do not align under the tokenizer of toy", _misaligned(3)),
    Row("units-profile-unaligned", "input", "unit_screening", (*UNITS, "--profile", "misaligned", "--emotions", "gratitude"),
        "3 of 12 gratitude pairs do not align under the tokenizer of toy (emotion prompt and neutral twin differ in token count "
        "or span position), more than alignment.max_unaligned_share 0.2 allows (at most 2)", _misaligned(3)),
    Row("patching-profile-unaligned", "input", "head_patching", (*PATCH[:3], "gratitude", *PATCH[4:], "--profile", "misaligned"),
        "3 of 12 gratitude pairs do not align under the tokenizer of toy", _misaligned(3)),
    Row("patching-profile-none-aligned", "input", "head_patching", (*PATCH[:3], "gratitude", *PATCH[4:], "--profile", "misaligned"),
        "12 of 12 gratitude pairs do not align under the tokenizer of toy", _misaligned(12)),
    Row("params-unaligned-share-1", "upfront", "head_screening", SCREEN, "key alignment.max_unaligned_share",
        _yaml_set("alignment", "max_unaligned_share", "1.0")),
    # issue 23: the neutral control's min_share outside [0, 1), a profile with too few neutral spans for it
    Row("params-specificity-min-share-1", "upfront", "head_screening", SCREEN, "key specificity.min_share",
        _yaml_set("specificity", "min_share", "1.0")),
    Row("units-params-specificity-min-share-negative", "upfront", "unit_screening", UNITS, "key specificity.min_share",
        _yaml_set("specificity", "min_share", "-0.1")),
    Row("screening-too-few-neutral-spans", "input", "head_screening", (*SCREEN, "--profile", "onespan", "--emotions", "gratitude"),
        "data/prompts/onespan/gratitude.txt: too few neutral spans for the neutral control", _one_neutral_span),
    Row("units-too-few-neutral-spans", "input", "unit_screening", (*UNITS, "--profile", "onespan", "--emotions", "gratitude"),
        "too few neutral spans for the neutral control", _one_neutral_span),
    Row("lexicon-no-single-token-word", "upfront", "head_screening", (*SCREEN, "--emotions", "gratitude"),
        "data/lexicons/gratitude.txt has no word with a single-token form under the tokenizer of",
        _lexicon(lambda n: ["qzxjvw", "vwkqzx"])),
    Row("prepare-lexicon-no-single-token-word", "upfront", "prepare_prompts",
        ("--tokenizer", "toy", "--output", "results/baseline/new_prompts.json"),
        "data/lexicons/gratitude.txt has no word with a single-token form under tokenizer toy", _lexicon(lambda n: ["qzxjvw", "vwkqzx"])),
    Row("lexicon-identical-to-neutral", "upfront", "head_screening", (*SCREEN, "--emotions", "gratitude"),
        "identical to the neutral lexicon", _lexicon(lambda n: n)),
    Row("lexicon-inside-neutral", "upfront", "head_screening", (*SCREEN, "--emotions", "gratitude"),
        "inside the neutral lexicon", _lexicon(lambda n: n[:3])),
    Row("ablation-lexicon-identical", "upfront", "head_ablation", ABL, "identical to the neutral lexicon",
        _lexicon(lambda n: n)),
    # --- device, dtype and memory (issue 18): one line naming the param, before the weights load
    Row("device-unknown", "upfront", "head_screening", (*SCREEN, "--device", "tpu"), "device: unknown device 'tpu'"),
    Row("device-cuda-absent", "upfront", "head_screening", (*SCREEN, "--device", "cuda"), "device: 'cuda' is not available",
        patch=_no_cuda),
    Row("params-device-cuda-absent", "upfront", "unit_screening", UNITS, "device: 'cuda' is not available",
        _yaml_set("", "device", "cuda"), patch=_no_cuda),
    Row("ablation-device-cuda-absent", "upfront", "head_ablation", (*ABL, "--device", "cuda:1"), "device: 'cuda' is not available",
        patch=_no_cuda),
    Row("attention-device-unknown", "upfront", "attention_figure",
        ("--model", "toy", "--output-dir", "results/baseline/plots/attention/new", "--device", "gpu"), "device: unknown device 'gpu'"),
    Row("params-device-unknown", "upfront", "head_screening", SCREEN, "key device: unknown device 'tpu'",
        _yaml_set("", "device", "tpu")),
    Row("dtype-unknown", "upfront", "head_patching", (*PATCH, "--dtype", "float64"), "dtype: unknown dtype 'float64'"),
    Row("params-dtype-unknown", "upfront", "head_screening", SCREEN, "key dtype", _yaml_set("", "dtype", "int8")),
    Row("dtype-device-cannot", "upfront", "head_screening", (*SCREEN, "--device", "cpu", "--dtype", "float16"),
        "dtype: 'float16' does not run on cpu", patch=_no_half_layer_norm),
    Row("budget-too-small-for-one-prompt", "upfront", "head_screening", (*SCREEN, "--memory-budget-gb", "1e-7"),
        "memory_budget_gb: 1e-07 GB is too small for one prompt"),
    Row("params-budget-too-small", "upfront", "unit_screening", UNITS, "memory_budget_gb: 1e-07 GB is too small for one prompt",
        _yaml_set("", "memory_budget_gb", "1.0e-7")),
    Row("budget-not-a-number", "upfront", "head_screening", (*SCREEN, "--memory-budget-gb", "lots"),
        "memory_budget_gb: 'lots' is not a number"),
    Row("params-budget-negative", "upfront", "head_screening", SCREEN, "key memory_budget_gb", _yaml_set("", "memory_budget_gb", "-1")),
    # --- the README's bad-input promise: unknown model offline, malformed head spec, layer out of
    # range, unpaired prompt files, a .pkl output (above), plus other usage errors
    Row("model-unknown-offline", "promise", "head_screening", ("--model", "nosuch-org/nosuch-model", "--output", "results/x.json"),
        "is not available"),
    Row("model-tokenizer-beyond-embedding", "model", "head_screening", ("--model", "openai-community/gpt2", "--output", "results/x.json"),
        "its tokenizer has 50,257 tokens but its embedding only 1,000 rows", _foreign_tokenizer_snapshot,
        patch=_hub_cache_beside_the_project),
    Row("model-name-empty", "promise", "head_screening", ("--model", "", "--output", "results/x.json"), "model name is empty"),
    Row("head-spec-malformed", "promise", "head_ablation", (*ABL[:5], "3-1", *ABL[6:]), "cannot parse"),
    Row("head-spec-layer-out-of-range", "promise", "head_ablation", (*ABL[:5], "9:0", *ABL[6:]), "9"),
    Row("head-spec-top-0", "promise", "head_ablation", (*ABL[:5], "top:0", *ABL[6:]), "top:N needs N >= 1"),
    Row("prompts-unpaired", "promise", "head_patching",
        (*PATCH[:3], "gratitude", *PATCH[4:], "--emotion-prompts", "bad_prompts/gratitude.txt",
         "--neutral-prompts", "bad_prompts/neutral.txt"), "unpaired prompts", _unpaired),
    Row("ablation-output-pickle", "promise", "head_ablation", (*ABL[:-1], "results/x.pkl"), "pickled outputs are refused"),
    Row("emotion-unknown", "promise", "head_ablation", (*ABL[:3], "joy", *ABL[4:]), "joy"),
    Row("flag-unknown", "promise", "head_screening", (*SCREEN, "--no-such-flag"), "unrecognized arguments"),
    Row("params-not-yaml", "promise", "head_screening", SCREEN, "is not valid YAML", _params(lambda t: t + "\n: : [\n")),
    Row("params-unknown-key", "promise", "head_screening", SCREEN, "key screening.nope", _yaml_set("screening", "nope", "1")),
    Row("screening-positions-unknown", "promise", "head_screening", (*SCREEN, "--positions", "middle"), "unknown positions"),
    Row("screening-exact-top-k-negative", "promise", "head_screening", (*SCREEN, "--exact-top-k", "-1"), "--exact-top-k must be >= 0"),
    Row("unit-spec-malformed", "promise", "head_ablation", (*ABL[:5], "mlp:x:1", *ABL[6:]), "cannot parse"),
    Row("ablation-max-tokens-0", "promise", "head_ablation", (*ABL, "--max-tokens", "0"), "--max-tokens must be at least 1"),
    Row("emotion-twice", "promise", "head_screening", (*SCREEN, "--emotions", "anger", "anger"), "given twice"),
    Row("params-missing", "promise", "head_screening", (*SCREEN, "--params", "nothing.yaml"), "does not exist"),
    # twins that differ from their emotion spans in a word class beyond 0.10 (issue 23)
    Row("prepare-twins-unmatched", "input", "prepare_prompts",
        ("--profile", "unmatched", "--emotions", "gratitude", "--output", "results/unmatched/prompts.json"),
        "the gratitude spans and their neutral twins differ in the 1st person class: 0.89 of the gratitude spans hold a "
        "1st person word but 0.00 of their twins (gap 0.89 > 0.10)", _unmatched_twins),
    # the GPT-NeoX tokenizer's builder (issue 23): a source that is not GPT-NeoX-20B's vocabulary
    Row("neox-tokenizer-foreign-gguf", "input", "gpt_neox_tokenizer",
        ("--source", "foreign.gguf", "--output", "data/tokenizers/new-neox"),
        "foreign.gguf is not GPT-NeoX-20B's vocabulary: its tokenizer model is 'gpt2' for architecture 'gpt2'", _foreign_gguf),
    Row("neox-tokenizer-cut-gguf", "input", "gpt_neox_tokenizer",
        ("--source", "cut.gguf", "--output", "data/tokenizers/gpt-neox"), "cut.gguf is not a readable GGUF file", _cut_gguf),
    # the benchmark with known answers (issue 16)
    Row("bench-emotion-without-prompts", "input", "bench_model", ("--profile", "partial", "--output", "results/models/newbench"),
        "has no anger prompts", _profile_from_baseline("partial", ("gratitude", "apology", "neutral"))),
    Row("bench-unknown-structure", "input", "bench_model", ("--structures", "distributed,bogus", "--output", "results/models/newbench"),
        "unknown benchmark structure 'bogus'"),
    Row("bench-too-few-held-out", "input", "bench_model", ("--profile", "few", "--output", "results/models/newbench"),
        "the statistics need at least", _profile_from_baseline("few", ("gratitude", "anger", "apology", "neutral"), 6)),
    # issue 24: a structure the prompts cannot carry (gratitude has 2 lexicon words no prompt shares a stem
    # with; the unequal head needs 3)
    Row("bench-structure-not-carried", "input", "bench_model",
        ("--structures", "unequal", "--emotion", "unequal=gratitude", "--output", "results/models/newbench"),
        "benchmark structure 'unequal' on gratitude: the prompts of baseline, extended cannot carry it (fewer than 3"),
]


def _digest(root: Path) -> dict[str, str]:
    """Every file (sha256) and folder under root, .git and caches aside."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_PARTS]
        rel = Path(dirpath).relative_to(root)
        out[f"{rel}/"] = "dir"
        for name in filenames:
            f = Path(dirpath) / name
            out[str(rel / name)] = "link" if f.is_symlink() else hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(
        [f"created {k}" for k in after.keys() - before.keys()]
        + [f"deleted {k}" for k in before.keys() - after.keys()]
        + [f"changed {k}" for k in before.keys() & after.keys() if before[k] != after[k]]
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One clone of the project (HEAD) that each row copies."""
    dst = tmp_path_factory.mktemp("bad-input") / "project"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(dst)], check=True)
    return dst


@pytest.fixture
def project(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    p = tmp_path / "project"
    shutil.copytree(template, p, symlinks=True)
    monkeypatch.chdir(p)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return p


def test_table_covers_every_class() -> None:
    ids = [r.id for r in ROWS]
    assert len(ids) == len(set(ids)), "row ids are unique"
    assert {r.cls for r in ROWS} == {"output", "input", "context", "model", "upfront", "promise"}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    fill = (row.setup(project) if row.setup else None) or {}
    for k, v in row.env.items():
        monkeypatch.setenv(k, v)
    if row.patch is not None:
        row.patch(monkeypatch)
    argv = [a.format(**fill) for a in row.argv]
    before = _digest(project)
    capsys.readouterr()
    main = importlib.import_module(f"analysis.{row.module}").main
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exc.value.code == 2, f"exit {exc.value.code}, stderr: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"not one error line: {err[-2000:]}"
    assert row.fragment in lines[0], lines[0]
    assert _changes(before, _digest(project)) == []
    assert not (project / "PWNED").exists()


SIGINT_SCRIPT = """
import os, signal, sys, time
import analysis.head_screening as stage

def interrupted_screen(*args, **kwargs):  # the screening, interrupted in the middle of its work
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)

stage.screen = interrupted_screen
stage.main(sys.argv[1:])
"""


def test_sigint_is_one_line_and_exit_130(project: Path) -> None:
    before = _digest(project)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-c", SIGINT_SCRIPT, *SCREEN], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), proc.stderr[-2000:]
    assert _changes(before, _digest(project)) == []


def test_sigint_during_a_real_run(project: Path) -> None:
    """A real SIGINT sent from outside while a stage computes (not during imports)."""
    before = _digest(project)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    script = (
        "import sys, time\nimport analysis.head_screening as stage\n"
        "def slow(*a, **k):\n    print('computing', flush=True)\n    time.sleep(60)\n"
        "stage.screen = slow\nstage.main(sys.argv[1:])\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *SCREEN], cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "computing"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 130, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: interrupted"), err[-2000:]
    assert _changes(before, _digest(project)) == []


def test_bom_is_stripped(tmp_path: Path) -> None:
    """Accepted, not refused: a UTF-8 BOM is an encoding marker some editors write, not text; the
    prompts and lexicon words read the same with and without it (no extra tokens)."""
    from analysis.core.prompts import load_lexicon, load_pairs

    src = REPO / "data/prompts/baseline"
    for name in ("gratitude", "neutral"):
        (tmp_path / f"{name}.txt").write_bytes(b"\xef\xbb\xbf" + (src / f"{name}.txt").read_bytes())
    plain = load_pairs("gratitude", "baseline", root=REPO / "data/prompts")
    bom = load_pairs("gratitude", None, emotion_file=tmp_path / "gratitude.txt", neutral_file=tmp_path / "neutral.txt")
    assert [p.text for p in bom.emotion_prompts] == [p.text for p in plain.emotion_prompts]
    assert [p.text for p in bom.neutral_prompts] == [p.text for p in plain.neutral_prompts]
    lex = tmp_path / "lex"
    lex.mkdir()
    (lex / "gratitude.txt").write_bytes(b"\xef\xbb\xbf" + (REPO / "data/lexicons/gratitude.txt").read_bytes())
    assert load_lexicon("gratitude", root=lex) == load_lexicon("gratitude", root=REPO / "data/lexicons")
