"""The conda files agree with pyproject.toml, pin the tested versions, and every rule's env holds
every third-party module its script reaches (statically, through this checkout's lightrnn)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
ENV_FILES = sorted((REPO / "workflow" / "envs").glob("*.yaml")) + [REPO / "environment.yml"]
# conda package name -> the name pyproject.toml (PyPI) uses
CONDA_TO_PYPI = {"pytorch": "torch"}
# top-level import name -> conda package
IMPORT_TO_CONDA = {"torch": "pytorch", "yaml": "pyyaml"}
MUST_PIN = {"torch", "numpy", "scipy", "matplotlib", "snakemake"}
OWN = {"lightrnn", "baselines", "_workflow"}


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def requirements() -> dict[str, SpecifierSet]:
    project = pyproject()["project"]
    listed = project["dependencies"] + [item for extra in project["optional-dependencies"].values() for item in extra]
    # An extra that names the project itself (slurm = ["lightrnn[workflow]", ...]) adds no package.
    return {Requirement(item).name.lower(): Requirement(item).specifier for item in listed
            if Requirement(item).name.lower() != project["name"]}


def pip_section(path: Path) -> dict[str, str]:
    """The pip: section of a conda file (packages conda-forge does not carry): name -> '==x.y'."""
    entries = [entry for entry in yaml.safe_load(path.read_text())["dependencies"] if isinstance(entry, dict)]
    listed = [item for entry in entries for item in entry.get("pip", []) if not item.startswith("-")]
    return {Requirement(item).name.lower(): str(Requirement(item).specifier) for item in listed}


def conda_entries(path: Path) -> dict[str, tuple[str, str]]:
    """conda name -> (version spec, build string): 'pytorch==2.13.0=cuda*' -> ('==2.13.0', 'cuda*')."""
    packages = {}
    for entry in yaml.safe_load(path.read_text())["dependencies"]:
        if isinstance(entry, dict):  # the pip: section
            continue
        name, spec, build = re.match(r"^([A-Za-z0-9_.-]+)\s*(=?=?[^=]*)(?:=(\S+))?$", entry).groups()
        packages[name.lower()] = (spec.strip(), build or "")
    return packages


def conda_packages(path: Path) -> dict[str, str]:
    """conda name -> version spec (the text after the name, e.g. '==2.4.6', '=3.11', ''), build string left out."""
    return {name: spec for name, (spec, _) in conda_entries(path).items()}


def test_gpu_jobs_get_a_cuda_torch_and_cpu_jobs_a_cpu_one():
    """train.yaml asks for a CUDA build whatever host creates it; train-cpu.yaml for the CPU build;
    the rest of the two files is the same."""
    envs = REPO / "workflow" / "envs"
    cuda, cpu = conda_entries(envs / "train.yaml"), conda_entries(envs / "train-cpu.yaml")
    assert cuda.pop("pytorch")[1] == "cuda*" and cpu.pop("pytorch")[1] == "cpu*"
    assert cuda == cpu
    assert all(build == "" for path in ENV_FILES if path.stem not in ("train", "train-cpu")
               for _, build in conda_entries(path).values())


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_conda_files_pin_tested_versions_inside_the_pyproject_ranges(path: Path):
    config = yaml.safe_load(path.read_text())
    assert "conda-forge" in config["channels"] and "nodefaults" in config["channels"], path
    assert "bioconda" not in config["channels"] and "defaults" not in config["channels"], path
    ranges = requirements()
    python = pyproject()["project"]["requires-python"]
    for name, spec in conda_packages(path).items():
        if name == "python":
            version = spec.lstrip("=")
            assert re.fullmatch(r"\d+\.\d+", version), f"{path.name}: python should be pinned like python=3.11"
            assert SpecifierSet(python).contains(version + ".0"), f"{path.name}: python {version} vs {python}"
            continue
        if name == "pip":
            continue
        pypi = CONDA_TO_PYPI.get(name, name)
        assert pypi in ranges, f"{path.name}: {name} is not a dependency in pyproject.toml"
        assert spec.startswith("=="), f"{path.name}: {name} must be pinned with == (got {spec!r})"
        version = spec[2:]
        assert ranges[pypi].contains(version), f"{path.name}: {name}=={version} is outside pyproject's {ranges[pypi]}"


def test_every_env_pins_the_same_versions_and_environment_yml_has_every_dependency():
    seen: dict[str, str] = {}
    for path in ENV_FILES:
        for name, spec in conda_packages(path).items():
            assert seen.setdefault(name, spec) == spec, f"{path.name}: {name}{spec} vs {seen[name]} elsewhere"
    everything = {CONDA_TO_PYPI.get(name, name) for name in conda_packages(REPO / "environment.yml")}
    everything |= set(pip_section(REPO / "environment.yml"))
    ranges = requirements()
    for name, spec in pip_section(REPO / "environment.yml").items():
        assert spec.startswith("==") and ranges[name].contains(spec[2:]), f"environment.yml pip: {name}{spec}"
    assert set(requirements()) <= everything, set(requirements()) - everything
    assert MUST_PIN <= everything
    assert pyproject()["project"]["requires-python"] == ">=3.11"


# ----- each rule's script against its env ------------------------------------------------------


def _module_file(name: str) -> Path | None:
    if name == "_workflow":
        return REPO / "workflow" / "scripts" / "_workflow.py"
    path = REPO.joinpath(*name.split("."))
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return path.with_suffix(".py") if path.with_suffix(".py").is_file() else None


def _imported_names(path: Path) -> set[str]:
    """Every absolute import anywhere in the file (function-level ones included: they run too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def third_party_imports(script: Path) -> set[str]:
    """Top-level third-party modules reachable from `script` through the project's own modules.

    Modules loaded by name count too: `lightrnn.cli` loads every `lightrnn.commands` module, and
    `lightrnn.registry` every model module of its REGISTRY.
    """
    from lightrnn.registry import REGISTRY

    by_name = {
        "lightrnn.cli": sorted((REPO / "lightrnn" / "commands").glob("*.py")),
        "lightrnn.registry": [_module_file(entry.split(":")[0]) for entry in REGISTRY.values()],
    }
    seen: set[Path] = set()
    todo, found = [script], set()
    while todo:
        for name in _imported_names(todo.pop()):
            parts = name.split(".")
            if parts[0] not in OWN:
                found.add(parts[0])
                continue
            files = [_module_file(".".join(parts[: i + 1])) for i in range(len(parts))]
            for prefix, loaded in by_name.items():
                if name == prefix or name.startswith(prefix + "."):
                    files += loaded
            for file in files:
                if file is not None and file not in seen:
                    seen.add(file)
                    todo.append(file)
    return {name for name in found if name not in sys.stdlib_module_names and name != "__future__"}


def rules_with_envs() -> list[tuple[str, Path, Path]]:
    """(rule, script, conda env) for every rule of workflow/rules/*.smk that has both."""
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.MULTILINE)[1:]:
            rule = block.split(":", 1)[0].strip()
            conda = re.search(r"conda:\s*\n\s*\"([^\"]+)\"", block)
            script = re.search(r"script:\s*\n\s*\"([^\"]+)\"", block)
            if script and re.search(r"conda:\s*\n\s*torch_env\(", block):  # either torch build (common.smk)
                envs = [smk.parent / "../envs/train.yaml", smk.parent / "../envs/train-cpu.yaml"]
            else:
                envs = [smk.parent / conda.group(1)] if conda else []
            for env in envs if script else []:
                found.append((rule, (smk.parent / script.group(1)).resolve(), env.resolve()))
    return found


def test_every_rule_with_a_script_has_a_conda_env():
    rules = {rule for rule, _, _ in rules_with_envs()}
    assert {"tiny_archive", "fetch", "prepare", "encode", "train", "evaluate", "render_report", "bench"} <= rules


@pytest.mark.parametrize(("rule", "script", "env"), rules_with_envs(), ids=lambda v: v if isinstance(v, str) else "")
def test_each_rule_env_has_every_module_its_script_imports(rule: str, script: Path, env: Path):
    packages = set(conda_packages(env))
    needed = {IMPORT_TO_CONDA.get(module, module) for module in third_party_imports(script)}
    missing = needed - packages
    assert not missing, f"rule {rule}: {script.name} imports {sorted(missing)}, absent from {env.name}"


def test_the_import_scan_sees_lazy_imports_behind_the_cli():
    """The bench rule reaches matplotlib only inside `lightrnn bench`: the scan must see it."""
    bench = REPO / "workflow" / "scripts" / "bench.py"
    assert "matplotlib" in third_party_imports(bench)
    # ... and the reallocation solver's scipy behind the model registry (train reaches it).
    assert "scipy" in third_party_imports(REPO / "workflow" / "scripts" / "train.py")
