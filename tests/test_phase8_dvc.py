"""Many experiments, many machines, with DVC's own tools only (issue 18, item 4).

In a scratch copy of the project (reduced: the `tiny` profile of 12 pairs, one emotion, the
fewest resamples params allow), this does what the README's "Phase 8" section tells a user:
- one machine: a model x parameter grid queued with `dvc exp run --queue -S a=x,y -S b=u,v`
  and run by DVC's own workers, `dvc queue start --jobs 2`;
- several machines: two clones of one git remote (a bare repository) each run an experiment
  and `dvc exp push` it (its git refs to the bare repository, its cached outputs to the DVC
  remote, a local folder); a third clone `dvc exp pull`s both and compares them with
  `dvc exp show` and `dvc metrics diff`.
No scheduler of our own: the test only issues DVC and git commands and reads what they print.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from analysis.modelfacts.random_weights import save_random_model

REPO = Path(__file__).resolve().parents[1]
N_PAIRS = 12
EMOTION = "anger"
LOCAL_GPT2 = "local/gpt2"
pytestmark = pytest.mark.slow
GIT_ID = ["-c", "user.email=t@t", "-c", "user.name=t"]


def _sh(args: list[str], cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    print("$", " ".join(args), f"  (in {cwd.name})", flush=True)
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory, toy_path: Path) -> dict[str, Path]:
    """A reproduced, committed scratch project pushed to a bare git remote and a local DVC remote."""
    base = tmp_path_factory.mktemp("phase8")
    root, bare, store = base / "repo", base / "origin.git", base / "dvc-store"
    files = _sh(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout.split()
    for f in files:
        if f.startswith("results/") or not (REPO / f).is_file():
            continue
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / f, root / f)
    shutil.copytree(toy_path, root / "results/models/toy")
    # A second "model" for the model axis of the sweep: a small random GPT-2 on the toy's tokenizer.
    save_random_model("gpt2", root / LOCAL_GPT2, tokenizer_dir=toy_path, seed=3)
    tiny = root / "data/prompts/tiny"
    tiny.mkdir(parents=True)
    for f in (REPO / "data/prompts/baseline").glob("*.txt"):
        (tiny / f.name).write_text("\n".join(f.read_text().splitlines()[:N_PAIRS]) + "\n")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["profile"] = "tiny"
    params["emotions"] = [EMOTION]
    params["specificity"]["select"] = False  # 6 expressions per half: no q < 0.05, no component `specific` (issue 23)
    for section in ("screening", "unit_screening", "scoring"):
        params[section]["n_resamples"] = 100
    params["unit_screening"]["exact_top_k"] = 2
    for section in ("ablation", "patching"):
        params[section]["cumulative_k"] = 1
        params[section]["max_tokens"] = 5
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _sh(["git", "init", "-q", "-b", "main"], root)
    _sh(["git", "add", "-A"], root)
    _sh(["git", "commit", "-qm", "init"], root)
    _sh(["dvc", "commit", "-f", "model@toy"], root)  # the copied toy build stands in for its stage
    _sh(["dvc", "repro"], root)
    _sh(["dvc", "remote", "add", "-d", "store", str(store)], root)
    _sh(["git", "add", "-A"], root)
    _sh(["git", "commit", "-qm", "repro"], root)
    _sh(["git", "init", "-q", "--bare", "-b", "main", str(bare)], base)
    _sh(["git", "remote", "add", "origin", str(bare)], root)
    _sh(["git", "push", "-q", "origin", "main"], root)
    _sh(["dvc", "push"], root)
    return {"root": root, "bare": bare, "base": base}


def _exp_rows(cwd: Path) -> list[dict]:
    """`dvc exp show --json`: one row per experiment (and the baseline), as DVC reports them."""
    out = json.loads(_sh(["dvc", "exp", "show", "--json"], cwd).stdout)
    rows = []

    def walk(entry: dict) -> None:
        rows.append(entry)
        for child in entry.get("experiments") or []:
            for rev in child.get("revs", []):
                walk(rev)

    for entry in out:
        walk(entry)
    return rows


def _params(row: dict) -> dict:
    return row["data"]["params"]["params.yaml"]["data"]


def _metrics(row: dict) -> dict:
    return row["data"]["metrics"]["results/summary.json"]["data"]


def test_queued_model_by_method_grid_runs_on_dvc_workers(origin: dict[str, Path]) -> None:
    root = origin["root"]
    # DVC's grid syntax: each -S with comma-separated values is an axis; 2 models x 2 methods.
    _sh(["dvc", "exp", "run", "--queue", "-S", f"models=[toy],[{LOCAL_GPT2}]", "-S", "ablation.method=zero,mean"], root)
    queued = _sh(["dvc", "queue", "status"], root).stdout
    print(queued)
    assert queued.count("Queued") == 4, queued
    _sh(["dvc", "queue", "start", "--jobs", "2"], root)
    deadline = time.monotonic() + 3600
    while True:
        status = _sh(["dvc", "queue", "status"], root).stdout
        if "Queued" not in status and "Running" not in status:
            break
        assert time.monotonic() < deadline, status
        time.sleep(15)
    print(status)
    assert status.count("Success") == 4 and "Failed" not in status, status
    rows = [r for r in _exp_rows(root) if r["rev"] != "workspace" and r.get("name") != "main" and "data" in r]
    runs = {(tuple(_params(r)["models"]), _params(r)["ablation"]["method"]): _metrics(r) for r in rows if r.get("name")}
    assert set(runs) == {(m, k) for m in (("toy",), (LOCAL_GPT2,)) for k in ("zero", "mean")}, sorted(runs)
    key = f"{EMOTION}.ablation.confirmation.emotion_score.mean"
    for model in ("toy", LOCAL_GPT2):
        zero, mean = runs[((model,), "zero")], runs[((model,), "mean")]
        # each run summarises its own model, and the method axis moved the ablation numbers
        assert f"{model}.{key}" in zero and f"{model}.{key}" in mean, sorted(zero)[:10]
        assert zero[f"{model}.{key}"] != mean[f"{model}.{key}"]
    assert runs[(("toy",), "zero")][f"toy.{key}"] < 0  # ablating the planted head lowers M


def test_two_clones_push_experiments_a_third_pulls_and_compares(origin: dict[str, Path]) -> None:
    base, bare = origin["base"], origin["bare"]
    names = {"machine-a": "mean", "machine-b": "resample"}
    for machine, method in names.items():
        clone = base / machine
        _sh(["git", "clone", "-q", str(bare), str(clone)], base)
        _sh(["dvc", "pull"], clone)  # the cached tables from the DVC remote: only the changed stages rerun
        r = _sh(["dvc", "exp", "run", "-n", f"exp-{machine}", "-S", f"ablation.method={method}"], clone)
        ran = [line for line in r.stdout.splitlines() if line.startswith("Running stage")]
        assert ran and not any("screen" in line for line in ran), ran
        _sh(["dvc", "exp", "push", "origin", f"exp-{machine}"], clone)
    refs = _sh(["git", "for-each-ref", "refs/exps"], bare).stdout
    print(refs)
    assert refs.count("refs/exps/") == 2, refs

    third = base / "machine-c"
    _sh(["git", "clone", "-q", str(bare), str(third)], base)
    listed = _sh(["dvc", "exp", "list", "origin"], third).stdout
    print(listed)
    assert "exp-machine-a" in listed and "exp-machine-b" in listed, listed
    for machine in names:
        _sh(["dvc", "exp", "pull", "origin", f"exp-{machine}"], third)
    shown = _sh(["dvc", "exp", "show", "--md", "--only-changed"], third)
    print(shown.stdout)
    rows = {r["name"]: r for r in _exp_rows(third) if (r.get("name") or "").startswith("exp-")}
    assert {n: _params(r)["ablation"]["method"] for n, r in rows.items()} == {f"exp-{m}": k for m, k in names.items()}
    diff_r = _sh(["dvc", "metrics", "diff", "exp-machine-a", "exp-machine-b", "--json"], third)
    print(_sh(["dvc", "metrics", "diff", "exp-machine-a", "exp-machine-b"], third).stdout)
    diff = json.loads(diff_r.stdout)["results/summary.json"]
    key = f"toy.{EMOTION}.ablation.confirmation.emotion_score.mean"
    assert key in diff, sorted(diff)
    a, b = _metrics(rows["exp-machine-a"])[key], _metrics(rows["exp-machine-b"])[key]
    assert diff[key]["old"] == a and diff[key]["new"] == b and a != b
    assert not [k for k in diff if ".screening." in k], "the screening is shared; only ablation cells may differ"
    # The pulled experiment is complete: its outputs (all `cache: false`) came with its git refs.
    _sh(["dvc", "exp", "apply", "exp-machine-b"], third)
    assert "up to date" in _sh(["dvc", "status"], third).stdout
