"""Device and dtype: resolution, one-line errors naming the param, and the measured tolerances."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from analysis import device as dev
from analysis.settings import hardware as hw
from analysis.base.errors import InputError
from analysis.modelfacts.random_weights import save_random_model


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setitem(hw.BACKENDS, "mps", hw.Backend(available=lambda: False, count=lambda: 0, indexed=False))


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch, no_accelerator: None) -> None:
    assert hw.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setitem(hw.BACKENDS, "mps", hw.Backend(available=lambda: True, count=lambda: 1, indexed=False))
    assert hw.resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert hw.resolve_device("AUTO") == torch.device("cuda:0")


def test_cuda_indices_within_the_count(two_gpus: None) -> None:
    assert hw.resolve_device("cuda") == torch.device("cuda:0")
    assert hw.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(InputError, match=r"^device: 'cuda:2' does not exist: this machine has 2 cuda device\(s\), cuda:0..cuda:1$"):
        hw.resolve_device("cuda:2")


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cpu:1", "mps:0", "cuda:-1", ""])
def test_unknown_device_names_the_param(spec: str) -> None:
    with pytest.raises(InputError, match=r"^device: unknown device .*; allowed: auto, cpu, cuda, cuda:N, mps$"):
        hw.resolve_device(spec)


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "mps"])
def test_missing_accelerator_names_the_param(spec: str, no_accelerator: None) -> None:
    with pytest.raises(InputError, match=r"^device: '(cuda|mps)' is not available on this machine .*use device: auto or cpu$"):
        hw.resolve_device(spec)


def test_unknown_dtype_names_the_param() -> None:
    with pytest.raises(InputError, match=r"^dtype: unknown dtype 'float64'; allowed: float32, bfloat16, float16$"):
        hw.resolve_dtype("float64")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_this_cpu_build_runs_every_dtype(dtype: str) -> None:
    # Probed, not assumed: torch 2.13's CPU build has float16 and bfloat16 kernels for matmul,
    # layer norm, softmax and their backward (older builds lacked float16 ones).
    p = hw.resolve("cpu", dtype)
    assert p.device == torch.device("cpu") and p.dtype == hw.DTYPES[dtype]
    assert p.record() == {"device": "cpu", "dtype": dtype}


def test_a_missing_kernel_fails_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = torch.nn.functional.layer_norm

    def half_less(x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        if x.dtype == torch.float16:
            raise RuntimeError('"LayerNormKernelImpl" not implemented for \'Half\'\nmore lines')
        return real(x, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "layer_norm", half_less)
    assert hw.resolve("cpu", "bfloat16").dtype == torch.bfloat16
    with pytest.raises(InputError) as info:
        hw.resolve("cpu", "float16")
    msg = str(info.value)
    assert msg == "dtype: 'float16' does not run on cpu (\"LayerNormKernelImpl\" not implemented for 'Half'); use dtype: float32 or another device"


def test_cli_prints_one_error_line_and_exits_2(capsys: pytest.CaptureFixture[str], no_accelerator: None) -> None:
    with pytest.raises(SystemExit) as info:
        dev.main(["--device", "cuda:1"])
    assert info.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: device: 'cuda' is not available"), err


def _texts() -> list[str]:
    repo = Path(__file__).resolve().parents[1]
    return [line.replace("[", "").replace("]", "") for f in sorted((repo / "data/prompts/baseline").glob("*.txt"))
            for line in f.read_text().splitlines()[:4]]


def test_stated_tolerances_hold_and_are_needed(tmp_path: Path, toy_path: Path) -> None:
    """A reduced random GPT-2 and the trained toy: each lower dtype stays within its tolerance vs
    float32, and exceeds float32's 1e-5 (so the separate tolerance is needed, not decoration)."""
    random_dir = save_random_model("gpt2", tmp_path / "g", tokenizer_dir=toy_path, n_layers=4, n_heads=8, d_model=256, seed=0)
    for model_dir in (random_dir, toy_path):
        errors = dev.measure(str(model_dir), _texts())
        assert set(errors) == {"bfloat16", "float16"}
        for name, err in errors.items():
            assert hw.TOLERANCE["float32"] < err <= hw.TOLERANCE[name], (model_dir, name, err)
        assert errors["float16"] < errors["bfloat16"]  # 10 mantissa bits against 7
