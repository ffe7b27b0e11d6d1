"""The DVC loop a researcher runs: repro, exp run -S, metrics diff, and a fresh clone.

Runs the real dvc.yaml in a temporary git repository on a reduced profile (`tiny`: 16 baseline pairs
whose split halves differ in size and between emotions, tests/uneven_profile.py), reusing the embedded
model's committed build so only the cheap stages run.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from analysis.base import contract
from uneven_profile import halves, write_uneven_profile

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
THREADS = {n: {"OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)} for n in (1, 2)}


def _sh(args: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1", **env}
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, toy_path: Path) -> Path:
    root = tmp_path_factory.mktemp("pipeline") / "repo"
    files = _sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split()
    for f in files:
        if f.startswith("results/") or not (REPO / f).is_file():
            continue
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, root / f)
    shutil.copytree(toy_path, root / "results/models/toy")
    write_uneven_profile(REPO / "data/prompts/baseline", root / "data/prompts/tiny")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["benchmark"] = {**params["benchmark"], "n_nulls": 0, "n_random_nulls": 0, "sweep": [1.0, 3.0]}  # the 260 nulls take ~40 min
    params["ablation"]["cumulative_k"] = 2
    params["patching"]["cumulative_k"] = 2
    # 6 expressions per half: no p below 2/64, so no q < 0.05 among 48 heads and no head `specific`
    params["specificity"]["select"] = False
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(["git", "init", "-q"], root)
    _sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], root)
    _sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], root)
    # The committed toy build stands in for the model stage (same code, data and params).
    _sh(["dvc", "commit", "-f", "model@toy"], root)
    _sh(["dvc", "repro"], root, **THREADS[2])  # a stated thread count: the rerun below compares bytes
    _sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], root)
    _sh(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "repro"], root)
    return root


def _summary(root: Path) -> dict:
    return json.loads((root / "results/summary.json").read_text())


def test_repro_is_clean_and_finds_the_planted_heads(project: Path) -> None:
    status = _sh(["dvc", "status"], project).stdout
    assert "up to date" in status, status
    s = _summary(project)
    planted = json.loads((project / "results/models/toy/planted.json").read_text())["by_emotion"]
    for emotion, heads in planted.items():
        assert [s[f"toy.{emotion}.screening.selection.top_layer"], s[f"toy.{emotion}.screening.selection.top_head"]] in heads
        assert s[f"toy.{emotion}.recovery.selection.exact.planted_rank"] == 1
        assert s[f"toy.{emotion}.recovery.selection.exact.auroc"] >= 0.99
        assert s[f"toy.{emotion}.ablation.confirmation.emotion_score.ci_high"] < 0
        assert s[f"toy.{emotion}.denoising.confirmation.emotion_score.ci_low"] > 0  # the planted head is sufficient
        assert s[f"toy.{emotion}.noising.confirmation.emotion_score.ci_high"] < 0  # and necessary
    for png in ("head_reaction_heatmap", "top_heads", "ablation_sentiment_comparison", "patching_keyword_comparison",
                "cumulative_topk", "unit_summary"):
        assert (project / f"results/tiny/plots/heads/toy/{png}.png").is_file()
    for f in ("heatmaps.png", "top_heads.csv", "top_heads.md"):
        assert (project / f"results/tiny/plots/models/{f}").is_file()


def test_every_count_is_of_its_own_half_and_emotion(project: Path) -> None:
    """The screenings' `pairs` records and the experiments' counts on a profile whose halves differ in
    size and between emotions (issue 30: the unit screening once gave the selection half the
    confirmation half's counts)."""
    for emotion in ("gratitude", "anger", "apology"):
        h = halves(project / "data/prompts/tiny", emotion)
        for doc, exact_half in ((contract.read_screening(project / contract.screening_file("tiny", "toy")), "selection"),
                                (contract.read_unit_screening(project / contract.unit_screening_file("tiny", "toy")), "confirmation")):
            n_exact = (h.n_selection_pairs, h.n_selection) if exact_half == "selection" else (h.n_confirmation_pairs, h.n_confirmation)
            record = {k: v for k, v in doc["pairs"][emotion].items() if not k.startswith("exact_n_")}
            assert record == {
                "half": "selection", "n_expressions": h.n_selection, "n_expressions_total": h.n_expressions,
                "n_pairs": h.n_selection_pairs, "n_pairs_used": h.n_selection_pairs, "n_clusters": h.n_selection, "exact_half": exact_half,
            }, (doc["schema"], emotion)
            assert {k: v for k, v in doc["pairs"][emotion].items() if k.startswith("exact_n_")} == {
                "exact_n_pairs": n_exact[0], "exact_n_pairs_used": n_exact[0], "exact_n_clusters": n_exact[1]}, (doc["schema"], emotion)
        for name, (kind, _) in contract.EXPERIMENTS.items():
            doc = contract.read_experiment(kind, project / contract.experiment_file(name, "tiny", "toy", emotion))
            e, c = doc["effects"]["emotion_score"], doc["effects_confirmation"]["emotion_score"]
            assert (doc["n_prompts"], e["n"], e["n_clusters"]) == (h.n_pairs, h.n_pairs, h.n_expressions), (name, emotion)
            assert (c["n"], c["n_clusters"]) == (h.n_confirmation_pairs, h.n_confirmation), (name, emotion)


def test_repro_finds_the_planted_units(project: Path) -> None:
    s = _summary(project)
    planted = json.loads((project / "results/models/toy/planted.json").read_text())["units_by_emotion"]
    for emotion, units in planted.items():
        assert [s[f"toy.{emotion}.units.confirmation.top_layer"], s[f"toy.{emotion}.units.confirmation.top_neuron"]] in units
        for half, score in (("selection", "attribution"), ("confirmation", "exact")):
            assert s[f"toy.{emotion}.recovery.units.{half}.{score}.planted_rank"] == 1
            assert s[f"toy.{emotion}.recovery.units.{half}.{score}.auroc"] >= 0.99
        assert s[f"toy.{emotion}.units.confirmation.top_exact_ci_low"] > 0 and s[f"toy.{emotion}.units.confirmation.top_exact_q"] < 0.05


def test_exp_run_on_the_top_unit_ablates_and_patches_it(project: Path) -> None:
    r = _sh(["dvc", "exp", "run", "-S", "ablation.head_spec=mlp-top:1", "-S", "patching.head_spec=mlp-top:1"], project)
    ran = [line for line in r.stdout.splitlines() if line.startswith("Running stage")]
    assert not any("screen" in line for line in ran), ran  # the screenings were up to date
    planted = json.loads((project / "results/models/toy/planted.json").read_text())["units_by_emotion"]
    s = _summary(project)
    for emotion, units in planted.items():
        for folder in ("head_ablation", "head_patching/denoising", "head_patching/noising"):
            doc = json.loads((project / f"results/tiny/patching/{folder}/toy_{emotion}.json").read_text())
            assert doc["units"] == units and doc["heads"] == []
        # the planted unit carries the emotion: ablating or noising it lowers M, denoising it raises M in the twin
        assert s[f"toy.{emotion}.ablation.confirmation.emotion_score.ci_high"] < 0
        assert s[f"toy.{emotion}.noising.confirmation.emotion_score.ci_high"] < 0
        assert s[f"toy.{emotion}.denoising.confirmation.emotion_score.ci_low"] > 0
    _sh(["git", "checkout", "-q", "--", "."], project)
    _sh(["dvc", "checkout", "-q"], project, check=False)


def test_fresh_clone_reproduces_summary(project: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    # Every output is committed (the Parquet tables too): the clone has them all and reruns nothing.
    r = _sh(["dvc", "repro"], clone)
    assert "Running stage" not in r.stdout, r.stdout
    assert _sh(["git", "status", "--porcelain"], clone).stdout == ""
    a, b = _summary(project), _summary(clone)
    assert a.keys() == b.keys()
    for k, v in a.items():
        if isinstance(v, (int, float)):
            assert abs(v - b[k]) <= 1e-6 * max(1.0, abs(v)), k
    assert "up to date" in _sh(["dvc", "status"], clone).stdout


def test_exp_run_method_mean_changes_ablation_numbers(project: Path) -> None:
    _sh(["dvc", "exp", "run", "-S", "ablation.method=mean"], project)
    diff = _sh(["dvc", "metrics", "diff", "--json"], project).stdout
    changed = json.loads(diff)["results/summary.json"]
    ablation_keys = [k for k in changed if ".ablation." in k]
    assert ablation_keys, changed
    moved = [k for k in changed if any(f".{x}." in k for x in ("denoising", "noising", "screening"))]
    assert not moved, f"only ablation cells should move: {moved}"
    doc = json.loads((project / "results/tiny/patching/head_ablation/toy_anger.json").read_text())
    assert doc["method"] == "mean"
    _sh(["git", "checkout", "-q", "--", "."], project)
    _sh(["dvc", "checkout", "-q"], project, check=False)


def test_exp_run_one_emotion_runs_only_its_cells(project: Path) -> None:
    r = _sh(["dvc", "exp", "run", "-S", "emotions=[anger]"], project)
    ran = [line for line in r.stdout.splitlines() if line.startswith("Running stage")]
    assert any("ablate@toy-anger" in line for line in ran), r.stdout
    assert not any("gratitude" in line or "apology" in line for line in ran), ran
    _sh(["git", "checkout", "-q", "--", "."], project)
    _sh(["dvc", "checkout", "-q"], project, check=False)


def test_unavailable_model_fails_in_its_stage_with_one_line(project: Path) -> None:
    r = _sh(["dvc", "exp", "run", "-S", "models=[EleutherAI/not-a-model]"], project, check=False)
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert "model@EleutherAI/not-a-model" in out or "model@" in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not available" in errors[0] and "`toy` works offline" in errors[0], out[-2000:]
    _sh(["git", "checkout", "-q", "--", "."], project)


@pytest.mark.parametrize(
    "patch, needle",
    [({"ablation": {"max_tokens": -1}}, "ablation.max_tokens"), ({"ablation": {"method": "foo"}}, "allowed: zero, mean, resample")],
)
def test_bad_params_fail_in_the_first_stage_that_reads_them(project: Path, tmp_path: Path, patch: dict, needle: str) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(project, copy, symlinks=True)
    _sh(["dvc", "checkout", "-q"], copy, check=False)
    assert "up to date" in _sh(["dvc", "status"], copy).stdout  # so only the bad key can make a stage run
    params = yaml.safe_load((copy / "params.yaml").read_text())
    for k, v in patch.items():
        params[k].update(v)
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    r = _sh(["dvc", "repro"], copy, check=False)
    out = r.stdout + r.stderr
    ran = [line for line in out.splitlines() if line.startswith("Running stage")]
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert r.returncode != 0 and len(errors) == 1 and needle in errors[0], out[-3000:]
    # the first stage to run reads the bad key (dvc.yaml lists it among its params): the validate stage for
    # ablation.max_tokens (its generation experiments, issue 24), an ablate stage for ablation.method; the
    # stages that do not read it were up to date
    key = f"ablation.{next(iter(patch['ablation']))}"
    stages = yaml.safe_load((copy / "dvc.yaml").read_text())["stages"]
    readers = {name for name, st in stages.items() if any(x in (key, "ablation") for x in st.get("params", []))}
    assert ran and ran[0].split("'")[1].split("@")[0] in readers, (ran, readers)
    assert ("validate" in readers) == (key == "ablation.max_tokens"), readers


# --------------------------------------------------------------------------------------------
# Committed results survive failures; the pipeline is repeatable and refuses a second run
# --------------------------------------------------------------------------------------------

SCREENING = "results/tiny/alignment/head_scores_toy.json"


def _digest(root: Path) -> dict[str, bytes]:
    """Every file of the work tree but .git and DVC's own state: a stray or changed file shows."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
        if p.is_file() and not {".git", "tmp", "cache"} & set(p.relative_to(root).parts[:2])
    }


def test_a_failed_stage_keeps_its_committed_output_and_status_names_it(project: Path) -> None:
    before = (project / SCREENING).read_bytes()
    r = _sh(["dvc", "exp", "run", "-S", "screening.n_resamples=-1"], project, check=False)
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error:")]
    assert r.returncode != 0 and len(errors) == 1 and "n_resamples" in errors[0], r.stdout + r.stderr
    assert (project / SCREENING).read_bytes() == before
    status = _sh(["dvc", "status"], project).stdout
    assert "screen@toy:" in status and "params.yaml" in status, status  # what must rerun, and why
    _sh(["git", "checkout", "-q", "--", "."], project)
    assert "up to date" in _sh(["dvc", "status"], project).stdout


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_stage_keeps_its_committed_output(project: Path, sig: signal.Signals) -> None:
    before = _digest(project)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", "screen@toy"], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # the stage's python is running once DVC prints its command
        if line.startswith("> python -m analysis.head_screening"):
            break
    time.sleep(2)  # inside the computation: torch is still loading (the whole stage takes ~10 s or more)
    os.killpg(proc.pid, sig)  # as Ctrl-C does (the whole foreground group), or kill -9 of the group
    proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert _digest(project) == before  # the committed screening and every other file as they were
    assert "up to date" in _sh(["dvc", "status"], project).stdout  # -f: nothing changed, nothing to rerun


def test_the_main_command_works_without_the_venv_on_path(project: Path) -> None:
    """`.venv/bin/dvc repro` from a shell where nothing is activated (the venv's .pth line, see Makefile)."""
    dvc = Path(sys.executable).parent / "dvc"
    r = subprocess.run([str(dvc), "repro", "-f", "-s", "prepare_prompts"], cwd=project, capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Running stage 'prepare_prompts'" in r.stdout
    assert _sh(["git", "status", "--porcelain"], project).stdout == ""


def test_two_repros_and_three_queued_experiments_leave_status_clean_and_no_strays(project: Path) -> None:
    before = _digest(project)
    for _ in range(2):
        _sh(["dvc", "repro"], project)
        assert "up to date" in _sh(["dvc", "status"], project).stdout
    assert _digest(project) == before and _sh(["git", "status", "--porcelain"], project).stdout == ""
    for k in (1, 2, 3):
        _sh(["dvc", "exp", "run", "--queue", "-S", f"plots.top_n={5 + k}"], project)
    r = _sh(["dvc", "queue", "start", "-j", "1"], project)
    deadline = time.time() + 1500
    while time.time() < deadline:
        status = _sh(["dvc", "queue", "status"], project).stdout
        if not any(s in status for s in ("Queued", "Running")):
            break
        time.sleep(5)
    assert status.count("Success") == 3, status
    assert "up to date" in _sh(["dvc", "status"], project).stdout
    assert _digest(project) == before and _sh(["git", "status", "--porcelain"], project).stdout == ""
    _sh(["dvc", "queue", "stop"], project, check=False)


def test_a_concurrent_second_repro_is_refused_by_dvcs_lock(project: Path) -> None:
    """DVC refuses it: its first line names the busy output and the PID (then the PID and a hint: 4 lines)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(["dvc", "repro", "-f", "-s", "screen@toy"], cwd=project, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert first.stdout is not None
    for line in first.stdout:
        if line.startswith("Running stage"):
            break
    second = _sh(["dvc", "repro"], project, check=False)
    first.communicate(timeout=600)
    assert first.returncode == 0
    out = (second.stdout + second.stderr).splitlines()
    assert second.returncode != 0 and "is busy, it is being blocked by" in out[0], out  # DVC's lock, first line
    assert "up to date" in _sh(["dvc", "status"], project).stdout


def _rerun(project: Path, root: Path, n: int) -> dict[str, bytes]:
    """Every stage after the model rerun on n torch threads in a copy of `project`: its results and dvc.lock."""
    probe = _sh([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], root.parent, **THREADS[n])
    assert probe.stdout.strip() == str(n)  # the stages' torch really runs on n threads
    shutil.copytree(project, root, symlinks=True)
    r = _sh(["dvc", "repro", "-f", "--downstream", "prepare_prompts"], root, **THREADS[n])
    assert r.stdout.count("Running stage") >= 10, r.stdout  # everything but the model reran
    return {f: b for f, b in _digest(root).items() if f.startswith("results/") or f == "dvc.lock"}


def test_the_same_thread_count_writes_the_same_bytes(project: Path, tmp_path: Path) -> None:
    """Rerun on the project's 2 threads: every committed file byte for byte (the pipeline is deterministic)."""
    again = _rerun(project, tmp_path / "threads2", 2)
    before = {f: b for f, b in _digest(project).items() if f.startswith("results/") or f == "dvc.lock"}
    assert again.keys() == before.keys()
    assert sorted(f for f in before if before[f] != again[f]) == []


def _close(a: object, b: object, key: str = "") -> list[str]:
    """Where two JSON values differ beyond float noise: numbers within rel 1e-3 or abs 1e-6 (an
    effect at the identity control's floor is ~1e-6 nats or less), everything else exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{key}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in _close(a[k], b[k], f"{key}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{key}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _close(x, y, f"{key}[{i}]")]
    if isinstance(a, bool) or isinstance(b, bool):
        return [] if (type(a), a) == (type(b), b) else [f"{key}: {a!r} vs {b!r}"]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return [] if math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6) else [f"{key}: {a} vs {b}"]
    return [] if a == b else [f"{key}: {a!r} vs {b!r}"]


@pytest.mark.xfail(strict=False, reason=(
    "measured 2026-12-07 (tiny profile, after the tie fix of 8ebead3): 28 summary numbers differ beyond rel 1e-3 between "
    "1 and 2 torch threads. Two causes: greedy continuations of the toy flip a token where two logits nearly tie "
    "(float-noise sums decide), which moves every generation metric of that prompt (ablation cumulative k2 emotion scores "
    "by ~0.02 nats, KL of the random heads by 5 %, a noising KL p from 1e-4 to 0.017); and the selection half's top-head "
    "q on the tiny profile (few expressions, so many sign-flip draws tie with the observed |t|) moves 0.538 vs 0.520. "
    "Not fixed (issue 30 stays open): same-thread reruns are byte-identical (the test above)."))
def test_one_and_two_torch_threads_agree_on_every_number_of_the_summary(project: Path, tmp_path: Path) -> None:
    """1 and 2 torch threads sum in different orders (their GEMM blocking differs), so noise-level
    numbers (an identity patch's 1e-11 nats, a random head's 1e-8) and the 6th digit of others may
    differ between them: bytes are not comparable (measured 2026-12-07: 18 files differ). What must
    not differ is a finding: every entry of results/summary.json (the top heads, every count of
    significant and specific components, every effect and interval) agrees within rel 1e-3 or
    abs 1e-6, and every non-number exactly."""
    _rerun(project, tmp_path / "threads1", 1)
    one = json.loads((tmp_path / "threads1/results/summary.json").read_text())
    assert _close(one, _summary(project)) == []

