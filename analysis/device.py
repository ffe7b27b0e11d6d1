"""Check that this machine runs a device and dtype, or measure each dtype's log-prob error against float32.

`--measure` is the measurement behind `analysis.settings.hardware.TOLERANCE` (the library this command
stands on: the device and dtype resolution every stage uses)."""

from __future__ import annotations

import torch

from analysis.core.cli import Parser, cli
from analysis.settings.hardware import DTYPES, resolve


def logprob_error(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, dtype: torch.dtype) -> float:
    """Max |log p_dtype - log p_float32| over real positions and the whole vocabulary.

    `model` is a float32 Hugging Face causal LM; a copy in `dtype` runs the same batch. The
    logits are cast to float32 before the log-softmax in both (the stages score one position,
    so that cast costs nothing and keeps the normaliser out of the comparison).
    input_ids, attention_mask: [batch, pos], right-padded.
    """
    import copy

    low = copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        ref = model(input_ids=input_ids, attention_mask=attention_mask).logits.float().log_softmax(-1)  # [b, p, vocab]
        got = low(input_ids=input_ids, attention_mask=attention_mask).logits.float().log_softmax(-1)
    return float((got - ref).abs()[attention_mask.bool()].max())


def measure(model_dir: str, texts: list[str]) -> dict[str, float]:
    """`logprob_error` of every non-float32 dtype for the saved model in `model_dir` on `texts`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "right"
    batch = tok(texts, return_tensors="pt", padding=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager", dtype=torch.float32).eval()
    return {name: logprob_error(model, batch.input_ids, batch.attention_mask, dt) for name, dt in DTYPES.items() if name != "float32"}


@cli
def main(argv: list[str] | None = None) -> None:
    import tempfile
    from pathlib import Path

    from analysis.modelfacts.random_weights import save_random_model

    ap = Parser(prog="python -m analysis.device", description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help="measure each dtype's log-prob error vs float32 (the TOLERANCE table)")
    ap.add_argument("--tokenizer", default="results/models/toy", help="tokenizer folder for the random models (and the trained toy)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args(argv)
    if not a.measure:
        p = resolve(a.device, a.dtype)
        print(f"device {p.device}, dtype {p.dtype_name}: runs; exactness tolerance vs float32 {p.tolerance:g}")
        return
    texts = [line.replace("[", "").replace("]", "") for f in sorted(Path("data/prompts/baseline").glob("*.txt"))
             for line in f.read_text().splitlines()[:4]]
    sizes = {"2x4x64": dict(n_layers=2, n_heads=4, d_model=64), "4x8x256": dict(n_layers=4, n_heads=8, d_model=256),
             "12x12x768 vocab 50257": dict(n_layers=12, n_heads=12, d_model=768, vocab_size=50257)}
    with tempfile.TemporaryDirectory() as tmp:
        for label, size in sizes.items():
            for seed in (0, 1):
                d = save_random_model("gpt2", Path(tmp) / f"{label}-{seed}", tokenizer_dir=Path(a.tokenizer), seed=seed, **size)
                print(f"random gpt2 {label} seed {seed}: " + ", ".join(f"{k} {v:.2e}" for k, v in measure(str(d), texts).items()))
    if (Path(a.tokenizer) / "model.safetensors").is_file():
        print(f"trained {a.tokenizer}: " + ", ".join(f"{k} {v:.2e}" for k, v in measure(a.tokenizer, texts).items()))


if __name__ == "__main__":
    main()
