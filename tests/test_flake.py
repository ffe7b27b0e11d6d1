"""The Nix flake: nixpkgs pinned by commit, a lock that matches it, and one list of Python versions.

The pure-Python tests need nothing. `test_check_flake_script` runs `.ci/check-flake`, which needs
`nix-instantiate` (Debian/Ubuntu: `apt-get install nix-bin`); without it the test is skipped
locally but FAILS under CI, where the workflow installs nix-bin first.
Also run (offline, no conftest) by the flake's own `checks.<system>.tests`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REV = "8fd9daa3db09ced9700431c5b7ad0e8ba199b575"  # nixos-25.11
NAR_HASH = "sha256-Ti+ZBvW6yrWWAg2szExVTwCd4qOJ3KlVr1tFHfyfi8Q="
LAST_MODIFIED = 1778430510


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def test_flake_lock_pins_nixpkgs() -> None:
    lock = json.loads((REPO / "flake.lock").read_text())
    assert lock["version"] == 7
    assert lock["root"] == "root"
    assert set(lock["nodes"]) == {"root", "nixpkgs"}
    assert lock["nodes"]["root"]["inputs"] == {"nixpkgs": "nixpkgs"}
    node = lock["nodes"]["nixpkgs"]
    assert node["locked"] == {
        "type": "github",
        "owner": "NixOS",
        "repo": "nixpkgs",
        "rev": REV,
        "narHash": NAR_HASH,
        "lastModified": LAST_MODIFIED,
    }
    assert node["original"] == {"type": "github", "owner": "NixOS", "repo": "nixpkgs", "rev": REV}


def test_flake_nix_uses_the_locked_rev() -> None:
    text = (REPO / "flake.nix").read_text()
    urls = re.findall(r'inputs\.nixpkgs\.url\s*=\s*"([^"]+)"', text)
    assert urls == [f"github:NixOS/nixpkgs/{REV}"]


def test_one_list_of_versions() -> None:
    """Python versions live in requirements.lock only; the shell reads torch's pin from there."""
    flake = (REPO / "flake.nix").read_text()
    pins = re.findall(r"[A-Za-z0-9_.\-]+(?:\[[^\]]*\])?==\d[^\s\"']*", flake)
    assert pins == [], f"version pins in flake.nix belong in requirements.lock: {pins}"
    assert "requirements.lock" in flake
    lock_lines = (REPO / "requirements.lock").read_text().splitlines()
    assert any(re.fullmatch(r"torch==\d[\w.]*", line) for line in lock_lines), "no torch== pin"


def _require_nix() -> None:
    if shutil.which("nix-instantiate") is None:
        msg = "nix-instantiate not on PATH (apt-get install nix-bin) - .ci/check-flake not run"
        if _in_ci():
            pytest.fail(msg + "; CI must install nix-bin before running the tests")
        pytest.skip(msg)


def _run_check_flake(env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(REPO / ".ci" / "check-flake")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FAIL" not in proc.stdout
    assert "check-flake: 0 failure(s)" in proc.stdout
    return proc


def test_check_flake_script() -> None:
    _require_nix()
    out = _run_check_flake().stdout
    # The behavioural checks ran: the stale-stamp case and the library preload.
    assert "ok    (g) venv script, .venv re-made by another interpreter with a matching stamp: recreated" in out
    assert "ok    (g) the .pth preloads libstdc++ + libz by path" in out


def test_check_flake_script_when_nix_warns(tmp_path: Path) -> None:
    """A Nix that prints warnings on stderr (Debian's nix-bin without a nixbld group does) must
    not turn them into results: before the fix this gave 20 `FAIL (e)` lines."""
    _require_nix()
    for tool in ("nix", "nix-instantiate"):
        real = shutil.which(tool)
        assert real is not None, tool
        wrapper = tmp_path / tool
        wrapper.write_text(
            "#!/usr/bin/env bash\n"
            "echo \"warning: the group 'nixbld' specified in 'build-users-group' does not exist\" >&2\n"
            f'exec "{real}" "$@"\n'
        )
        wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    assert "nixbld" not in _run_check_flake(env).stdout  # the warning never became a result line
