"""analysis.base.io: stated precision, output checks before any work, atomic writes, one-line read errors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from analysis.core.cli import cli
from analysis.base.errors import InputError
from analysis.base.io import (
    SIGNIFICANT_DIGITS,
    atomic_path,
    check_output_dir,
    check_output_path,
    read_json,
    read_parquet,
    round_float,
    write_json,
    write_parquet,
)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "emotion-heads/test/v1"


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


OLD = '{"schema": "emotion-heads/test/v1"}\n'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git work tree with the project's ignore files, a tracked README and a tracked result."""
    root = tmp_path / "repo"
    (root / "results").mkdir(parents=True)
    for f in (".gitignore", ".dvcignore"):
        shutil.copy(REPO / f, root / f)
    (root / "README.md").write_text("readme\n")
    (root / "results/old.json").write_text(OLD)  # a committed result: a document of the kind its writer writes
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return root


# ---------------------------------------------------------------------------------- precision


def test_floats_are_stored_at_six_significant_digits(tmp_path: Path) -> None:
    assert SIGNIFICANT_DIGITS == 6
    doc = {"schema": SCHEMA, "a": 0.123456789, "b": [1.0000004, 12345678.9, -2.5e-9], "n": 3, "t": True, "s": "0.1234567"}
    write_json(tmp_path / "x.json", doc)
    got = json.loads((tmp_path / "x.json").read_text())
    assert got == {"schema": SCHEMA, "a": 0.123457, "b": [1.0, 12345700.0, -2.5e-9], "n": 3, "t": True, "s": "0.1234567"}


def test_float32_summation_noise_does_not_change_the_stored_value() -> None:
    # 1e-8 relative (the size measured between thread counts) moves none of these at 6 digits
    for x in (0.1234564, -3.14159265, 2.7182818e-5, 123.45649):
        assert round_float(x) == round_float(x * (1 + 1e-8)) == round_float(x * (1 - 1e-8))


def test_parquet_floats_are_rounded_and_dtypes_kept(tmp_path: Path) -> None:
    table = pd.DataFrame({
        "x": [0.123456789, 2.0],
        "f32": pd.Series([1.23456789, 2.0], dtype="float32"),
        "i": [7, 8],
        "ids": [[1, 2], [3]],
        "scores": [[0.11111111, 2.0], [3.0]],
    })
    write_parquet(tmp_path / "t.parquet", table, {"schema": SCHEMA, "v": 0.987654321})
    got, meta = read_parquet(tmp_path / "t.parquet", SCHEMA)
    assert got["x"].tolist() == [0.123457, 2.0]
    assert str(got["f32"].dtype) == "float32" and got["f32"].tolist() == pytest.approx([1.23457, 2.0], rel=1e-7)
    assert got["i"].tolist() == [7, 8] and [list(v) for v in got["ids"]] == [[1, 2], [3]]
    assert [list(v) for v in got["scores"]] == [[0.111111, 2.0], [3.0]]
    assert meta == {"schema": SCHEMA, "v": 0.987654}


def test_non_finite_numbers_are_refused_with_where(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"non-finite number \(nan\) at \$\.a\[1\]"):
        write_json(tmp_path / "x.json", {"schema": SCHEMA, "a": [1.0, float("nan")]})
    with pytest.raises(InputError, match="non-finite number in column 'x'"):
        write_parquet(tmp_path / "t.parquet", pd.DataFrame({"x": [1.0, float("inf")]}), {"schema": SCHEMA})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- output checks


def test_an_output_may_not_be_an_input_or_inside_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "models/toy"
    model.mkdir(parents=True)
    screening = tmp_path / "head_scores.json"
    screening.write_text("{}")
    with pytest.raises(InputError, match=r"is an input of this run .*head_scores\.json"):
        check_output_path(screening, suffix=".json", inputs=[screening])
    with pytest.raises(InputError, match=r"is an input of this run .*models/toy"):
        check_output_path(model / "config.json", suffix=".json", inputs=[model])
    monkeypatch.chdir(tmp_path)  # the same file named two ways
    with pytest.raises(InputError, match="is an input of this run"):
        check_output_path("./models/../head_scores.json", inputs=[screening])
    assert check_output_path(tmp_path / "other.json", inputs=[screening, model]) == tmp_path / "other.json"


def test_a_tracked_project_file_outside_results_is_refused(repo: Path) -> None:
    with pytest.raises(InputError, match=r"git-tracked project file README\.md; .* only under results/"):
        check_output_path(repo / "README.md")
    assert check_output_path(repo / "results/old.json") == repo / "results/old.json"  # a committed result
    assert check_output_path(repo / "new.json") == repo / "new.json"  # untracked


def test_a_folder_a_file_parent_or_a_read_only_folder_fails_before_any_work(tmp_path: Path) -> None:
    (tmp_path / "d.json").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        check_output_path(tmp_path / "d.json", suffix=".json")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"f is a file"):
        check_output_path(tmp_path / "f/sub/x.json")
    # root may write anywhere but sysfs; anyone else: a folder without write permission
    if os.geteuid() == 0:
        read_only = Path("/sys")
    else:
        read_only = tmp_path / "ro"
        read_only.mkdir(mode=0o555)
    with pytest.raises(InputError, match="cannot write output .*: folder .*(Permission denied|Read-only)"):
        check_output_path(read_only / "new/x.json")
    with pytest.raises(InputError, match="exists and is not a folder"):
        check_output_dir(tmp_path / "f")


def test_the_check_creates_no_folder(tmp_path: Path) -> None:
    assert check_output_path(tmp_path / "a/b/c.json") == tmp_path / "a/b/c.json"
    assert check_output_dir(tmp_path / "m/toy") == tmp_path / "m/toy"
    assert list(tmp_path.iterdir()) == []


def test_a_failed_cli_run_creates_no_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "new/folder/scores.json"
    r = subprocess.run(
        [sys.executable, "-m", "analysis.head_screening", "--model", "toy", "--emotions", "nostalgia", "--output", str(out)],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert "nostalgia" in r.stderr
    assert not (tmp_path / "new").exists()


def test_summarize_refuses_to_replace_the_readme(tmp_path: Path) -> None:
    before = (REPO / "README.md").read_bytes()
    r = subprocess.run(
        [sys.executable, "-m", "analysis.summarize", "--output", "README.md"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("error: ") and "must end in .json" in r.stderr
    with pytest.raises(InputError, match="git-tracked project file params.yaml"):  # this project's own files
        check_output_path(REPO / "params.yaml")
    assert (REPO / "README.md").read_bytes() == before



def test_an_experiment_may_not_write_into_its_model_folder(tmp_path: Path) -> None:
    """The model folder (results/models/toy) is an input of an ablation: checked before the model loads."""
    from analysis.experiments.config import parse_config
    from analysis.experiments.run import prepare

    if not (REPO / "results/models/toy/config.json").is_file():
        pytest.skip("the toy model is not built")
    out = REPO / "results/models/toy/ablation.json"
    c = parse_config("ablation", ["--model", "toy", "--emotion", "anger", "--head-spec", "0:0", "--output", str(out)])
    with pytest.raises(InputError, match="is an input of this run"):
        prepare(c)
    assert not out.exists() and not out.with_suffix(".parquet").exists()


@pytest.mark.parametrize("stage", ["head_plots", "model_comparison"])
def test_a_plot_output_dir_is_checked_before_any_input_is_read(tmp_path: Path, stage: str) -> None:
    """--output-dir goes through check_output_dir first: a file there is the error, not the missing inputs."""
    (tmp_path / "taken").write_text("x")
    inputs = {
        "head_plots": ["--profile", "baseline", "--head-scores", "absent.json", "--ablation-file", "absent.json",
                       "--patching-file", "absent.json"],
        "model_comparison": ["--profile", "baseline", "--models", "org/absent", "--emotions", "anger"],
    }[stage]
    r = subprocess.run(
        [sys.executable, "-m", f"analysis.{stage}", *inputs, "--output-dir", str(tmp_path / "taken")],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "exists and is not a folder" in r.stderr, r.stderr
    r = subprocess.run(
        [sys.executable, "-m", f"analysis.{stage}", *inputs, "--output-dir", str(tmp_path / "new/plots")],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert r.returncode == 2 and "absent" in r.stderr, r.stderr
    assert not (tmp_path / "new").exists()  # the check creates no folder


# ------------------------------------------------------------------------------------ atomicity


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_a_sigkill_in_the_write_window_leaves_an_ignored_temp_that_the_next_write_removes(repo: Path) -> None:
    target = repo / "results/old.json"
    child = (
        "import os, signal\nfrom analysis.base.io import atomic_path\n"
        f"with atomic_path({str(target)!r}) as tmp:\n"
        "    tmp.write_text('half')\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", child], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == -signal.SIGKILL
    stray = [p for p in (repo / "results").iterdir() if p.name != "old.json"]
    assert len(stray) == 1 and stray[0].name.startswith(".old.json.") and stray[0].suffix == ".tmp"
    assert target.read_text() == OLD  # the old file is untouched
    assert _git(repo, "status", "--porcelain") == ""  # git does not see the stray
    dvc = Path(sys.executable).parent / "dvc"
    subprocess.run([str(dvc), "init", "-q", "--subdir"], cwd=repo, check=True)
    ignored = subprocess.run([str(dvc), "check-ignore", str(stray[0].relative_to(repo))], cwd=repo, capture_output=True, text=True)
    assert ignored.returncode == 0, ignored  # nor does DVC (a folder out or dep hashes without it)
    write_json(target, {"schema": SCHEMA})
    assert sorted(p.name for p in (repo / "results").iterdir()) == ["old.json"]


# ---------------------------------------------------------------------------------- bad inputs


def test_non_utf8_json_is_one_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"schema": "\xff\xfe"}')
    with pytest.raises(InputError, match=r"bad\.json is not UTF-8 text \(byte 12\)"):
        read_json(bad)


@pytest.mark.parametrize("content", [b"PAR1 this is not a table PAR1", b"", b"\x00" * 64, b'{"json": 1}'])
def test_garbage_parquet_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(content)

    @cli
    def main() -> None:
        read_parquet(bad)

    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: input file {bad} is not a readable Parquet table: "), err


def test_a_write_replaces_only_its_own_kind(tmp_path: Path) -> None:
    """Issue 22, at the write (the commands check the same before any work): a document replaces a
    file of its own schema kind, any version; another kind, or a file that is no output, stays."""
    from analysis.base.io import read_json, schema_kind, write_json

    assert schema_kind("emotion-heads/ablation/v2") == "emotion-heads/ablation"
    f = tmp_path / "a.json"
    write_json(f, {"schema": "emotion-heads/ablation/v1", "x": 1})
    write_json(f, {"schema": "emotion-heads/ablation/v2", "x": 2})  # a new version of the same kind
    assert read_json(f)["x"] == 2
    with pytest.raises(InputError, match="emotion-heads/ablation/v2 document"):
        write_json(f, {"schema": "emotion-heads/summary/v1"})
    (tmp_path / "mine.json").write_text('{"note": 1}\n')
    with pytest.raises(InputError, match="not an emotion-heads output"):
        write_json(tmp_path / "mine.json", {"schema": "emotion-heads/summary/v1"})
    assert read_json(f)["x"] == 2 and (tmp_path / "mine.json").read_text() == '{"note": 1}\n'
