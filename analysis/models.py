"""Stage `model`: a model name -> a local folder the pipeline can depend on (`toy` is built; others are located)."""

from __future__ import annotations

from pathlib import Path

from analysis.core.cli import Parser, cli
from analysis.base.contract import check_model_output, MODEL_SOURCE_SCHEMA, write_source
from analysis.base.errors import InputError
from analysis.base.io import check_output_path
from analysis.core.loading import BENCH, EMBEDDED, load_model, TOY
from analysis.embedded.build import build_toy_model
from analysis.embedded.construction import ToyConfig


def materialize(name: str, output: Path, *, seed: int, toy_steps: int) -> Path:
    """Build `toy` into `output`, or record where another model's weights were found.

    Each model gets its own folder, so a stage for GPT-2 never depends on the toy's build.
    """
    import hashlib

    check_output_path(output / "x")
    if name == TOY:
        return build_toy_model(ToyConfig(seed=seed, steps=toy_steps), output)
    if name == BENCH:
        # Its own stage builds it (analysis.bench_model): its one fitted size is measured with the interventions.
        raise InputError(f"model `bench` is built by {EMBEDDED[BENCH][1]}, not by the model stage")
    model = load_model(name)
    folder = Path(model.path) if Path(model.path).is_dir() else None
    if folder is None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        folder = Path(cached).parent if isinstance(cached, str) else None
    digests = {}
    if folder is not None:
        for f in sorted(folder.iterdir()):
            if f.is_file() and f.suffix in (".json", ".safetensors", ".txt", ".model"):
                digests[f.name] = hashlib.sha256(f.read_bytes()).hexdigest()
    write_source(
        output,
        {
            "schema": MODEL_SOURCE_SCHEMA,
            "model": name,
            "family": model.spec.family,
            "n_layers": model.spec.n_layers,
            "n_heads": model.spec.n_heads,
            "d_head": model.spec.d_head,
            "d_mlp": model.spec.d_mlp,
            "folder": str(folder) if folder else None,
            "sha256": digests,
        },
    )
    return output


@cli
def main(argv: list[str] | None = None) -> None:

    from analysis.settings.params import load_params

    ap = Parser(prog="python -m analysis.models", description="Stage `model`: build toy or locate a model.")
    ap.add_argument("--model", required=True)
    ap.add_argument("--output", required=True, type=Path)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    a = ap.parse_args(argv)
    p = load_params(a.params)  # the first stage: a bad params.yaml fails here, in one line
    check_model_output(a.output, "toy" if a.model == TOY else "located", inputs=[a.params])
    materialize(a.model, a.output, seed=p.seed, toy_steps=p.toy.steps)
    print(f"wrote {a.output}")


if __name__ == "__main__":
    main()
