"""The structure holds: no import cycle, one source for model names and training keys,
every file reference points at a file in the repository, `ruff check` is clean."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lightrnn.config import TrainConfig
from lightrnn.registry import names
from lightrnn.report.layout import MODEL_LABELS, MODEL_ORDER

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lightrnn", "baselines")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Project modules `path` imports anywhere (functions included), outside `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(child) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
               for child in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            candidates = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in candidates if name in modules)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = {_module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}
    modules = set(files)
    # A package's __init__ is imported on the way to any of its modules; it is not an edge of interest.
    return {name: {m for m in _imports(path, modules) if not name.startswith(m + ".")} - {name}
            for name, path in files.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycle_in_the_packages() -> None:
    graph = _import_graph()
    assert "lightrnn.training.train" in graph and "lightrnn.training.evaluate" in graph
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


# ----- the layers: docs/DESIGN.md's diagram, checked against the import graph ---------------------

_DIAGRAM_LINE = re.compile(r"^(?P<layer>[a-z][a-z ]*?)\s{2,}(?P<names>\S.*)$")
_DIAGRAM_NAME = re.compile(r"^(?:[\w/]+\.py|\w+/)$")


def _layer_diagram(text: str) -> list[tuple[str, list[str]]]:
    """(layer, names) from the first code block under `## Layers`, the top layer first; text in
    parentheses is comment. Names: `x.py` and `d/` under lightrnn/, `baselines/` at the top."""
    section = text.split("## Layers", 1)[1]
    block = section.split("```", 2)[1]
    layers = []
    for line in block.splitlines():
        match = _DIAGRAM_LINE.match(re.sub(r"\(.*?\)", "", line).rstrip())
        if match:
            names = [name for name in match["names"].split() if _DIAGRAM_NAME.match(name)]
            layers.append((match["layer"].strip(), names))
    return layers


def _diagram_module(name: str) -> str:
    """`train.py` -> lightrnn.training.train, `__init__.py` -> lightrnn, `report/` -> lightrnn.report.* (the
    package and every module in it), `baselines/` -> baselines.*."""
    if name == "baselines/":
        return "baselines.*"
    parts = [part for part in name.removesuffix("/").removesuffix(".py").split("/") if part != "__init__"]
    return ".".join(["lightrnn", *parts]) + (".*" if name.endswith("/") else "")


def _layer_of(module: str, placed: dict[str, int]) -> int | None:
    """The layer of `module` itself in the diagram, else of the innermost package named with it."""
    if module in placed:
        return placed[module]
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) + ".*" in placed:
            return placed[".".join(parts[:end]) + ".*"]
    return None


def _placed() -> dict[str, int]:
    """Module or package -> layer number (0 = the bottom layer), from docs/DESIGN.md."""
    layers = _layer_diagram((REPO / "docs" / "DESIGN.md").read_text(encoding="utf-8"))
    return {_diagram_module(name): len(layers) - 1 - index for index, (_, names) in enumerate(layers) for name in names}


def _upward_imports(graph: dict[str, set[str]], placed: dict[str, int]) -> list[str]:
    return sorted(
        f"{source} (layer {_layer_of(source, placed)}) imports {target} (layer {_layer_of(target, placed)})"
        for source, targets in graph.items() for target in targets
        if _layer_of(target, placed) is not None and _layer_of(source, placed) is not None
        and _layer_of(target, placed) > _layer_of(source, placed)  # type: ignore[operator]
    )


def test_the_layer_diagram_places_every_module_and_names_only_modules() -> None:
    graph, placed = _import_graph(), _placed()
    assert len({layer for layer in placed.values()}) >= 5, "docs/DESIGN.md: no layer diagram found"
    unplaced = sorted(module for module in graph if _layer_of(module, placed) is None)
    assert not unplaced, f"modules in no layer of docs/DESIGN.md's diagram: {unplaced}"
    unknown = sorted(name for name in placed if name.removesuffix(".*") not in graph)
    assert not unknown, f"docs/DESIGN.md's diagram names modules that do not exist: {unknown}"


def test_no_module_imports_a_higher_layer() -> None:
    upward = _upward_imports(_import_graph(), _placed())
    assert not upward, "imports of a higher layer (docs/DESIGN.md):\n" + "\n".join(upward)


def test_the_layer_check_finds_an_upward_import() -> None:
    placed = {"lightrnn.core.lm": 0, "lightrnn.training.train": 2, "lightrnn.report.*": 1, "lightrnn": 0}
    graph = {"lightrnn.core.lm": {"lightrnn.training.train"}, "lightrnn.report.tables": {"lightrnn.core.lm"}, "lightrnn.training.train": set()}
    assert _upward_imports(graph, placed) == ["lightrnn.core.lm (layer 0) imports lightrnn.training.train (layer 2)"]
    assert _layer_of("lightrnn.report.tables", placed) == 1 and _layer_of("lightrnn.report", placed) == 1
    assert _layer_of("lightrnn.method.word_table", placed) is None  # `__init__.py` places the package alone, not its modules
    diagram = "## Layers\n```\ntop    train.py  report/  (a comment.py)\nbottom    lm.py  baselines/\n```\n"
    assert _layer_diagram(diagram) == [("top", ["train.py", "report/"]), ("bottom", ["lm.py", "baselines/"])]


def test_report_and_benchmark_do_not_import_each_other() -> None:
    graph = _import_graph()
    crossing = sorted(
        f"{source} -> {target}" for source, targets in graph.items() for target in targets
        for one, other in (("lightrnn.report", "lightrnn.benchmark"), ("lightrnn.benchmark", "lightrnn.report"))
        if (source + ".").startswith(one + ".") and (target + ".").startswith(other + ".")
    )
    assert not crossing, f"report/ and benchmark/ import each other (they share CSV files only): {crossing}"


def test_only_report_readme_writes_the_readme() -> None:
    """One module edits README.md: the others build the text of a block and hand it over."""
    writers = re.compile(r"\b(write_readme|replace_section|replace_block_in_section)\(")
    owner = REPO / "lightrnn" / "report" / "readme.py"
    found = sorted(
        f"{path.relative_to(REPO)}:{number}" for package in PACKAGES for path in (REPO / package).rglob("*.py")
        if path != owner
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if writers.search(line)
    )
    assert not found, f"README edits outside lightrnn/report/readme.py: {found}"


# ----- one source for the model names and the training keys ---------------------------------------

def _yaml(path: str) -> dict:
    return yaml.safe_load((REPO / path).read_text(encoding="utf-8"))


def test_model_names_agree_everywhere() -> None:
    registry = names()
    schema = _yaml("workflow/schemas/config.schema.yaml")
    assert schema["$defs"]["model"]["enum"] == registry, "workflow/schemas/config.schema.yaml $defs.model.enum"
    assert list(MODEL_ORDER) == registry and sorted(MODEL_LABELS) == sorted(registry), "lightrnn/report/layout.py"
    for config_file in ("config/config.yaml", "config/smoke.yaml"):
        config = _yaml(config_file)
        assert set(config["models_to_run"]) <= set(registry), f"{config_file} models_to_run"
        if "models" in config:
            assert sorted(config["models"]) == sorted(registry), f"{config_file} models"
        if "bench" in config and "models" in config["bench"]:
            assert set(config["bench"]["models"]) <= set(registry), f"{config_file} bench.models"


def test_training_keys_agree_everywhere() -> None:
    keys = set(TrainConfig.keys()) - {"model"}  # the workflow sets `model` from the run matrix
    schema_keys = set(_yaml("workflow/schemas/config.schema.yaml")["$defs"]["train_keys"]["properties"])
    assert schema_keys == keys, f"schema train_keys differ from TrainConfig: {sorted(schema_keys ^ keys)}"
    written = set(_yaml("config/config.yaml")["train"])
    assert written == keys, f"config/config.yaml train: differs from TrainConfig: {sorted(written ^ keys)}"


def test_every_model_declares_its_options() -> None:
    from lightrnn.registry import check_options, model_class

    for name in names():
        options = model_class(name).options
        assert isinstance(options, tuple) and options, name
        with pytest.raises(ValueError, match=f"model {name} got unknown option"):
            check_options(name, {"no_such_option": 1})
        # A config with a bad model option fails when it is read, before any work starts.
        with pytest.raises(ValueError, match="config key model_options: .*no_such_option"):
            TrainConfig(model=name, model_options={"no_such_option": 1})


# ----- references -----------------------------------------------------------------------------------

_REFERENCE = re.compile(r"(?<![\w/.<-])((?:[\w-]+/)*[\w-]+\.md)\b")
_SCANNED = ("*.py", "*.smk", "*.yaml", "*.yml", "*.md", "*.rst", "Snakefile", "Makefile", "*.toml")
# Folders the DAG and the commands write (a table named tables/aclw.md), and placeholders.
_OUTPUT_OR_PLACEHOLDER = re.compile(r"^(tables|plots|results|path|[A-Z_]+)/")


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    return [REPO / line for line in listed.stdout.splitlines() if line and (REPO / line).is_file()]


def test_documents_the_code_names_exist() -> None:
    """Documents named in code, configs and docs (docs/DESIGN.md, config/README.md) are in the repository."""
    files = _tracked_files()
    known = {path.relative_to(REPO).as_posix() for path in files}
    scanned = [path for path in files if any(path.match(pattern) for pattern in _SCANNED)
               and not path.relative_to(REPO).as_posix().startswith(("results/", "tests/"))]
    missing = []
    for path in scanned:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if "microsoft/CNTK" in line or "github.com" in line:
                continue  # a file of another repository
            for reference in _REFERENCE.findall(line):
                if _OUTPUT_OR_PLACEHOLDER.match(reference):
                    continue
                relative = (path.parent.relative_to(REPO) / reference).as_posix()
                if reference not in known and relative not in known:
                    missing.append(f"{path.relative_to(REPO)}:{number}: {reference}")
    assert not missing, "references to files that are not in the repository:\n" + "\n".join(missing)


def test_design_document_exists_and_is_referenced() -> None:
    design = REPO / "docs" / "DESIGN.md"
    assert design.is_file()
    text = design.read_text(encoding="utf-8")
    for heading in ("Layers", "Data flow", "To add a model", "To add a dataset", "To add a metric"):
        assert heading in text, heading
    assert "docs/DESIGN.md" in (REPO / "README.md").read_text(encoding="utf-8")


# ----- lint ---------------------------------------------------------------------------------------

def test_ruff_check_is_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: pip install -e .[test]")
    result = subprocess.run([ruff, "check", "lightrnn", "baselines", "benchmarks", "workflow/scripts", "tests"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_types_every_model_option_as_its_model_does() -> None:
    """The workflow schema's `model_options` is every settable option of every registered model, with
    the type of its constructor annotation and the bounds of the model's `option_bounds`: a dry run
    refuses what `lightrnn train` refuses (an unknown option, `head_bias: 3`, `table_seed: -1`)."""
    import inspect

    from lightrnn.config import _OPTION_KINDS
    from lightrnn.registry import model_class

    schema = _yaml("workflow/schemas/config.schema.yaml")["$defs"]["train_keys"]["properties"]["model_options"]
    assert schema["additionalProperties"] is False
    types = {"int": "integer", "float": "number", "bool": "boolean", "str": "string",
             "Sequence[int]": "array", "Sequence[float]": "array"}
    settable: dict[str, tuple[str, bool, tuple | None]] = {}
    for name in names():
        cls = model_class(name)
        parameters = inspect.signature(cls.__init__).parameters
        for option in cls.options:
            annotation = str(parameters[option].annotation)
            kind = annotation.removesuffix(" | None")
            if kind in _OPTION_KINDS:
                settable[option] = (kind, annotation.endswith(" | None"), cls.option_bounds.get(option))
    assert set(schema["properties"]) == set(settable), sorted(set(schema["properties"]) ^ set(settable))
    for option, (kind, optional, bounds) in settable.items():
        entry = schema["properties"][option]
        if "enum" in entry:
            continue  # a string option with its allowed values
        declared = entry["type"] if isinstance(entry["type"], list) else [entry["type"]]
        assert types[kind] in declared and (("null" in declared) == optional), option
        item = entry.get("items", entry)
        if bounds is not None:
            assert (item["minimum"], item["maximum"]) == bounds, option
