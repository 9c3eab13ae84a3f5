"""Each conda env parses, pins its packages, and names every third-party package that the
scripts of its rules import, directly or through medverify (import closure by AST)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"
PKG = REPO / "src" / "medverify"

#: import name -> distribution name
DISTRIBUTION = {
    "torch": "torch",
    "numpy": "numpy",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "pandas": "pandas",
    "scipy": "scipy",
    "matplotlib": "matplotlib",
    "seaborn": "seaborn",
    "yaml": "pyyaml",
    "jsonschema": "jsonschema",
    "tqdm": "tqdm",
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "medmnist": "medmnist",
    "maraboupy": "maraboupy",
    "pulp": "pulp",
    "highspy": "highspy",
    "auto_LiRPA": "auto-lirpa",
    "threadpoolctl": "threadpoolctl",
}
#: what packages installed --no-deps need at run time (their declared deps are not used)
NO_DEPS_REQUIRES = {
    "medmnist": {"numpy", "pandas", "scikit-learn", "pillow", "tqdm", "torch"},
}
#: the solver each backend drives (checked even before its module exists)
BACKEND_REQUIRES = {
    "marabou": {"maraboupy"},
    "crown": {"torch"},
    "milp": {"pulp", "highspy"},
    "exact": {"numpy"},
    "abcrown": set(),  # runs the user's own alpha-beta-CROWN checkout, nothing to install
}


def rule_blocks() -> dict[str, dict[str, str]]:
    """rule name -> {'conda': ..., 'script': ...} from workflow/rules/*.smk."""
    rules = {}
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0].strip()
            entry = {}
            for key in ("conda", "script"):
                m = re.search(rf"^\s+{key}:\s*\n\s+(\S+)", block, re.M)
                if m:
                    entry[key] = m[1].strip("\"'")
            rules[name] = entry
    return rules


def verifier_envs() -> dict[str, str]:
    """backend -> env stem (from the package), and the base env of the other rules."""
    from medverify.verifiers import BACKENDS, conda_env

    text = (REPO / "workflow" / "rules" / "common.smk").read_text()
    base = re.search(r'BASE_ENV = "\.\./\.\./envs/(\w+)\.yaml"', text)[1]
    assert "conda_env(wildcards.verifier)" in text  # the verify rule's env comes from there
    return {name: conda_env(name) for name in BACKENDS}, base


def module_path(name: str) -> Path | None:
    parts = name.split(".")[1:]
    for cand in (PKG.joinpath(*parts).with_suffix(".py"), PKG.joinpath(*parts, "__init__.py")):
        if cand.exists():
            return cand
    return None


def imports_of(path: Path, module: str) -> set[str]:
    """Absolute names of everything ``path`` imports (anywhere, lazy imports included)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                names.add(stem)
                names.update(f"{stem}.{a.name}" for a in node.names)
            else:
                names.add(node.module)
                names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def third_party(script: Path, extra_modules=()) -> set[str]:
    """Distributions needed by a script and the medverify modules it reaches."""
    todo = [(script, "script")] + [(module_path(m), m) for m in extra_modules if module_path(m)]
    seen, dists = set(), set()
    while todo:
        path, module = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path, module):
            top = name.split(".")[0]
            if top == "medverify":
                sub = module_path(name)
                if sub is not None:
                    todo.append((sub, name.removesuffix(".__init__")))
            elif top not in sys.stdlib_module_names and top != "__future__":
                assert top in DISTRIBUTION, f"{path} imports {top}: add it to DISTRIBUTION"
                dists.add(DISTRIBUTION[top])
    for dist in list(dists):
        dists |= NO_DEPS_REQUIRES.get(dist, set())
    return dists


def env_packages(name: str) -> set[str]:
    """Distribution names an env installs: its pip section and its post-deploy script."""
    spec = yaml.safe_load((ENVS / f"{name}.yaml").read_text())
    found = set()
    for dep in spec["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                if line.startswith("-"):
                    continue
                found.add(re.split(r"[=<>!\[ ]", line)[0].lower())
        else:
            found.add(re.split(r"[=<>! ]", dep)[0].lower())
    post = ENVS / f"{name}.post-deploy.sh"
    if post.exists():
        for m in re.finditer(r"pip install --no-deps ([^\n]+)", post.read_text()):
            found.update(p.split("==")[0].lower() for p in m[1].split())
    return found


ENV_NAMES = sorted(p.stem for p in ENVS.glob("*.yaml"))


@pytest.mark.parametrize("name", ENV_NAMES)
def test_env_parses_and_pins(name):
    spec = yaml.safe_load((ENVS / f"{name}.yaml").read_text())
    deps = spec["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    pkgs = [line for line in pip if not line.startswith("-")]
    assert pkgs and all("==" in line for line in pkgs), f"unpinned in {name}: {pkgs}"
    assert "torch==2.13.0+cpu" in pip
    assert "-e .." in pip  # medverify from this checkout
    assert not any(line.startswith(("medmnist", "auto-lirpa", "torchvision")) for line in pkgs)


def test_every_rule_names_an_existing_env_and_script():
    rules = rule_blocks()
    venvs, base = verifier_envs()
    assert set(venvs) == set(BACKEND_REQUIRES)
    assert {"data", "train", "select", "verify", "merge", "figures", "examples"} <= set(rules)
    for name, entry in rules.items():
        assert (REPO / "workflow" / "rules" / entry["script"]).resolve().exists(), name
        if entry["conda"] != "verifier_env":
            assert entry["conda"] == "BASE_ENV", name
    for env in {*venvs.values(), base}:
        assert (ENVS / f"{env}.yaml").exists()


def test_envs_name_every_package_their_rules_import():
    rules = rule_blocks()
    venvs, base = verifier_envs()
    scripts = REPO / "workflow" / "scripts"
    for name, entry in rules.items():
        script = (REPO / "workflow" / "rules" / entry["script"]).resolve()
        if entry["conda"] == "BASE_ENV":
            need, env = third_party(script), base
            missing = need - env_packages(env)
            assert not missing, f"rule {name} (envs/{env}.yaml) lacks {sorted(missing)}"
    verify = scripts / "verify.py"
    for verifier, env in venvs.items():
        need = third_party(verify, [f"medverify.verifiers.{verifier}"])
        need |= BACKEND_REQUIRES[verifier]
        for dist in BACKEND_REQUIRES[verifier]:
            need |= NO_DEPS_REQUIRES.get(dist, set())
        missing = need - env_packages(env)
        assert not missing, f"verifier {verifier} (envs/{env}.yaml) lacks {sorted(missing)}"


def test_closure_reaches_lazy_solver_imports():
    """The import scan itself: the milp backend's lazy `import pulp` is seen."""
    milp = PKG / "verifiers" / "milp.py"
    if not milp.exists():
        pytest.skip("milp backend not written yet")
    need = third_party(REPO / "workflow" / "scripts" / "verify.py", ["medverify.verifiers.milp"])
    assert {"pulp", "torch", "onnxruntime", "numpy"} <= need


def test_post_deploy_scripts_install_no_deps_packages():
    for name in ENV_NAMES:
        post = ENVS / f"{name}.post-deploy.sh"
        assert post.exists(), f"envs/{name}.post-deploy.sh missing (medmnist needs --no-deps)"
        text = post.read_text()
        assert text.startswith("#!/usr/bin/env bash") and "set -euo pipefail" in text
        assert "medmnist==3.0.2" in text
