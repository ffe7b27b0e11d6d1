{
  # nixpkgs is pinned by commit (branch nixos-25.11); flake.lock records the same rev and its narHash.
  # Python packages are NOT taken from nixpkgs: the shell installs them with pip from
  # requirements.lock, the same lock CI installs from, so there is one list of versions.
  description = "emotion-heads: pinned toolchain (CPython 3.11, Quarto, git, make) for the analysis, DVC pipeline and report";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/8fd9daa3db09ced9700431c5b7ad0e8ba199b575";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
        "x86_64-darwin"
      ];
      # builtins only, so no second input (flake-utils) and no lib needed here.
      forAllSystems =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system;
          }) systems
        );

      perSystem =
        system:
        let
          pkgs = nixpkgs.legacyPackages.${system};
          inherit (pkgs) lib;
          isLinux = pkgs.stdenv.hostPlatform.isLinux;
          python = pkgs.python311; # CI runs CPython 3.11

          # On Linux a plain PyPI torch is the CUDA build; the shell takes the CPU wheel.
          # The version itself comes from requirements.lock (its torch== line), never from here.
          torchIndex = lib.optionalString isLinux "https://download.pytorch.org/whl/cpu";
          torchIndexArg = lib.optionalString isLinux "--index-url ${torchIndex}";

          # pip wheels (torch, pyarrow, ...) need libstdc++ and libz at run time; NixOS has no /usr/lib.
          # Only the project's Python gets them: a .pth file in the venv preloads both by absolute
          # path at interpreter start (the dynamic loader then resolves the wheels' libstdc++.so.6
          # and libz.so.1 to the loaded copies). An exported LD_LIBRARY_PATH would reach every host
          # C++ program started from the shell, which on non-NixOS hosts can then fail to start.
          preloadLibs = [
            "${pkgs.stdenv.cc.cc.lib}/lib/libstdc++.so.6"
            "${pkgs.zlib}/lib/libz.so.1"
          ];
          # One line (site.py runs a .pth line that starts with "import"); no comprehension: site
          # exec()s the line in a function's locals, which a comprehension's scope cannot see.
          preloadPth = "import ctypes${
            builtins.concatStringsSep "" (map (p: "; ctypes.CDLL('${p}', mode=ctypes.RTLD_GLOBAL)") preloadLibs)
          }";
          writePreload = lib.optionalString isLinux ''
            site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
            echo "${preloadPth}" > "$site/emotion_heads_nix_libs.pth"
          '';

          # Creates / updates ROOT/.venv from ROOT/requirements.lock. Idempotent: a stamp holding
          # sha256(requirements.lock, pyproject.toml, interpreter, torch index, preloaded libraries)
          # skips the install when nothing changed, so the second `nix develop` is quick. The
          # interpreter is checked before the stamp: a .venv re-made by another Python (`make venv`
          # outside the shell) keeps its old, matching stamp.
          venvSetup = pkgs.writeShellApplication {
            name = "emotion-heads-venv";
            runtimeInputs = [
              python
              pkgs.coreutils
              pkgs.gnugrep
            ];
            text = ''
              root="''${1:?usage: emotion-heads-venv PROJECT_ROOT}"
              cd "$root"
              for f in requirements.lock pyproject.toml; do
                if [ ! -f "$f" ]; then
                  echo "emotion-heads-venv: $root/$f not found" >&2
                  exit 1
                fi
              done
              venv="$root/.venv"
              stamp="$venv/.nix-lock-sha256"
              want="$(
                {
                  sha256sum requirements.lock pyproject.toml
                  echo "python ${python}"
                  echo "torch-index ${torchIndex}"
                  echo "preload ${lib.optionalString isLinux preloadPth}"
                } | sha256sum | cut -d' ' -f1
              )"
              if [ -f "$venv/pyvenv.cfg" ] && ! grep -qF "home = ${python}/" "$venv/pyvenv.cfg"; then
                echo "emotion-heads: $venv was made by another interpreter; recreating it with ${python}" >&2
                rm -f "$stamp"
                python3 -m venv --clear "$venv"
              fi
              if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
                exit 0
              fi

              torch_req="$(grep -E '^torch==' requirements.lock | head -n 1 || true)"
              if [ -z "$torch_req" ]; then
                echo "emotion-heads-venv: requirements.lock pins no torch==VERSION" >&2
                exit 1
              fi

              echo "emotion-heads: installing requirements.lock into $venv (first entry or lock changed) ..." >&2
              if [ ! -x "$venv/bin/python" ]; then
                python3 -m venv "$venv"
              fi
              rm -f "$stamp"

              pip=("$venv/bin/python" -m pip --disable-pip-version-check)
              export PYTHONNOUSERSITE=1
              unset PYTHONPATH SOURCE_DATE_EPOCH
              "''${pip[@]}" install --no-deps ${torchIndexArg} "$torch_req"
              "''${pip[@]}" install -r requirements.lock
              "''${pip[@]}" install --no-deps -e .
              ${writePreload}
              echo "$want" > "$stamp"
              echo "emotion-heads: $venv is up to date with requirements.lock" >&2
            '';
          };

          # What apps do before running: find the project root, make sure the venv is current,
          # and put it first on PATH (the same environment the dev shell gives).
          enterVenv = ''
            root="$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
            emotion-heads-venv "$root"
            cd "$root"
            export VIRTUAL_ENV="$root/.venv"
            export PATH="$VIRTUAL_ENV/bin:$PATH"
            export QUARTO_PYTHON="$VIRTUAL_ENV/bin/python"
            export PYTHONNOUSERSITE=1
            unset PYTHONPATH
          '';

          mkRunner =
            name: command:
            pkgs.writeShellApplication {
              name = "emotion-heads-${name}";
              runtimeInputs = [
                venvSetup
                pkgs.git
                pkgs.coreutils
                pkgs.quarto
                pkgs.gnumake
              ];
              text = enterVenv + command;
            };
          repro = mkRunner "repro" ''
            exec dvc repro "$@"
          '';
          report = mkRunner "report" ''
            exec quarto render report "$@"
          '';
          mkApp = drv: description: {
            type = "app";
            program = "${drv}/bin/${drv.name}";
            meta = { inherit description; };
          };

          # For checks only: nixpkgs' own pytest (no pins), to run the network-free tests.
          checkPython = python.withPackages (ps: [ ps.pytest ]);
        in
        {
          devShell = pkgs.mkShell {
            name = "emotion-heads";
            packages = [
              python
              pkgs.quarto
              pkgs.git
              pkgs.gnumake
              venvSetup
            ];
            PYTHONNOUSERSITE = "1";
            shellHook = ''
              unset PYTHONPATH SOURCE_DATE_EPOCH
              _eh_root="$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
              if [ -f "$_eh_root/requirements.lock" ]; then
                emotion-heads-venv "$_eh_root" \
                  || echo "emotion-heads: venv setup FAILED (nothing stamped; re-enter the shell to retry)" >&2
                export VIRTUAL_ENV="$_eh_root/.venv"
                export PATH="$VIRTUAL_ENV/bin:$PATH"
                export QUARTO_PYTHON="$VIRTUAL_ENV/bin/python"
              else
                echo "emotion-heads: no requirements.lock under $_eh_root; run nix develop from the repository" >&2
              fi
              unset _eh_root
            '';
          };

          # The scripts behind the apps, also buildable on their own (`nix build .#repro`).
          packages = {
            venv = venvSetup;
            inherit repro report;
          };

          apps = {
            repro = mkApp repro "Run the DVC pipeline (dvc repro) in the project venv";
            report = mkApp report "Render the Quarto report (quarto render report) with the venv's Python";
          };

          # Offline by design: the sandbox has no network, so pip cannot install requirements.lock
          # here and the full pytest suite (torch, transformers, ...) does NOT run in `nix flake check`.
          # That suite runs in CI and via `nix develop -c pytest`. This check runs what needs no
          # network: the lock/flake consistency tests (tests/test_flake.py, pure-Python part), a
          # byte-compile of the package with the pinned CPython 3.11, the torch pin's presence, and
          # (through nativeBuildInputs) the build of the shell scripts, which shellchecks them.
          tests =
            pkgs.runCommand "emotion-heads-offline-checks"
              {
                # Depending on the scripts makes `nix flake check` build them, i.e. shellcheck them.
                nativeBuildInputs = [
                  checkPython
                  pkgs.gnugrep
                  venvSetup
                  repro
                  report
                ];
                src = self;
              }
              ''
                cd "$src"
                python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'
                grep -Eq '^torch==[0-9]' requirements.lock
                PYTHONPYCACHEPREFIX="$TMPDIR/pycache" python3 -m compileall -q analysis tests
                PYTHONPYCACHEPREFIX="$TMPDIR/pycache" HOME="$TMPDIR" \
                  python3 -m pytest -q -p no:cacheprovider --noconftest tests/test_flake.py
                touch "$out"
              '';
        };

      each = forAllSystems perSystem;
      pick = attr: builtins.mapAttrs (_: v: v.${attr}) each;
    in
    {
      devShells = builtins.mapAttrs (_: v: { default = v.devShell; }) each;
      packages = pick "packages";
      apps = pick "apps";
      checks = builtins.mapAttrs (_: v: { inherit (v) tests; }) each;
    };
}
