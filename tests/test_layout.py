"""The package's shape: one command module per stage package, no module importing another's
private names, no import circles, and every sub-command registered where cli.COMMANDS says.
Read from the source with ast (nothing imported), so a violation names file and line."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from mmssl.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "mmssl"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) of every import of an mmssl module, at any depth
    (function-level imports count: they make circles just the same when called)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mmssl"):
            names = [a.name for a in node.names]
            # ``from mmssl.preprocess import pipeline`` imports a module, not a name
            module_names = [n for n in names if f"{node.module}.{n}" in MODULES]
            if module_names:
                found += [(node.lineno, f"{node.module}.{n}", []) for n in module_names]
            rest = [n for n in names if n not in module_names]
            if rest or not module_names:
                found.append((node.lineno, node.module, rest))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("mmssl")]
    return found


def test_no_module_imports_a_private_name_of_another():
    offences = [f"{path.relative_to(PACKAGE.parent)}:{line}: {name} from {module}"
                for path in MODULES.values() for line, module, names in imports(path)
                for name in names if name.startswith("_")]
    # attribute access through a module alias (``mc._load_map``) counts too
    for path in MODULES.values():
        tree = ast.parse(path.read_text())
        aliases = {a.asname or a.name.split(".")[-1] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                   for a in n.names if isinstance(n, ast.Import) and a.name.startswith("mmssl")
                   or isinstance(n, ast.ImportFrom) and (n.module or "").startswith("mmssl")
                   and f"{n.module}.{a.name}" in MODULES}
        offences += [f"{path.relative_to(PACKAGE.parent)}:{n.lineno}: {n.value.id}.{n.attr}" for n in ast.walk(tree)
                     if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in aliases
                     and n.attr.startswith("_") and not n.attr.startswith("__")]
    assert offences == []


def graph() -> dict[str, set[str]]:
    """module -> the mmssl modules it imports (a package's __init__ counts as the package)."""
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = set()
        for _, module, _ in imports(path):
            while module not in MODULES and "." in module:
                module = module.rsplit(".", 1)[0]
            if module in MODULES and module != name:
                targets.add(module)
        edges[name] = targets
    return edges


def test_no_import_circles():
    edges = graph()
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            circles.append(" -> ".join(stack[stack.index(node):] + [node]))
            return
        for nxt in sorted(edges[node]):
            if nxt not in done:
                visit(nxt, stack + [node])

    done: set[str] = set()
    for module in sorted(edges):
        visit(module, [])
        done.add(module)
    assert circles == []


def test_the_circle_finder_finds_a_planted_circle(monkeypatch, tmp_path):
    """The test above can fail: two modules importing each other make a circle."""
    fake = {"mmssl.a": tmp_path / "a.py", "mmssl.b": tmp_path / "b.py"}
    fake["mmssl.a"].write_text("from mmssl.b import f\n")
    fake["mmssl.b"].write_text("def f():\n    from mmssl.a import g\n")
    monkeypatch.setattr(f"{__name__}.MODULES", fake)
    with pytest.raises(AssertionError, match=r"mmssl\.a -> mmssl\.b -> mmssl\.a"):
        test_no_import_circles()


def test_each_stage_package_has_one_command_module_registering_its_commands():
    registering = sorted(name for name, path in MODULES.items() if "def add_commands" in path.read_text())
    assert registering == sorted(set(COMMANDS.values()))
    assert all(name.endswith(".commands") for name in registering)
    for command, module in COMMANDS.items():
        assert f'"{command}"' in MODULES[module].read_text(), (command, module)


def test_only_the_io_helper_renames_files_into_place():
    """One atomic-write helper: no other module calls os.replace / rename by hand."""
    offenders = [f"{path.relative_to(PACKAGE.parent)}:{i}" for path in MODULES.values() if path.name != "io.py"
                 for i, line in enumerate(path.read_text().splitlines(), 1)
                 if any(call in line for call in ("os.replace(", "os.rename(", "shutil.move("))]
    assert offenders == []


def test_stage_command_modules_do_not_import_the_cli() -> None:
    """mmssl.cli imports the command modules; they must not import it back."""
    for name in [*sorted(set(COMMANDS.values())), "mmssl.report.tables"]:
        assert "mmssl.cli" not in {m for _, m, _ in imports(MODULES[name])}, name


def test_train_package_init_is_only_a_docstring() -> None:
    body = ast.parse(MODULES["mmssl.train"].read_text()).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)


# The intended layer order, lowest first: a module may import its own layer and the layers
# below it, never one above (no back-imports: evaluate and maps do not reach into train, data
# does not reach into the trainer, the BIDS reader knows nothing of stores). A layer is a list
# of package prefixes; the top-level modules not named are the core (layer 0).
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("mmssl.types", "mmssl.io", "mmssl.paths", "mmssl.settings", "mmssl.schema", "mmssl.version",
              "mmssl.progress", "mmssl.errors", "mmssl.device", "mmssl.augment", "mmssl.modalities",
              "mmssl.arguments", "mmssl")),
    ("BIDS input", ("mmssl.bids",)),
    ("per-scan imaging", ("mmssl.preprocess",)),
    ("data", ("mmssl.data",)),
    ("models", ("mmssl.models",)),
    ("objectives", ("mmssl.objectives",)),
    ("train", ("mmssl.train",)),
    ("evaluate", ("mmssl.evaluate",)),
    ("maps", ("mmssl.maps",)),
    ("report", ("mmssl.report",)),
    ("entry points", ("mmssl.config", "mmssl.plan", "mmssl.cli", "mmssl.__main__")),
]


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]] = LAYERS) -> int:
    """The index of the layer naming ``module`` or its longest named prefix."""
    best, found = -1, None
    for i, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found is not None, f"{module}: in no layer of tests/test_layout.py LAYERS; add it there"
    return found


def back_imports(modules: dict[str, Path]) -> list[str]:
    """Every import of a module from a higher layer, as 'file:line: module (layer) imports
    target (higher layer)'."""
    offences = []
    for name, path in modules.items():
        mine = layer_of(name)
        for line, target, _ in imports(path):
            while target not in MODULES and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in MODULES and layer_of(target) > mine:
                offences.append(f"{path.name}:{line}: {name} ({LAYERS[mine][0]}) imports {target} "
                                f"({LAYERS[layer_of(target)][0]})")
    return offences


def test_no_module_imports_from_a_higher_layer():
    assert back_imports(MODULES) == []


def test_the_layer_check_finds_a_planted_back_import(tmp_path):
    """The test above can fail: a store module importing the trainer is named."""
    planted = tmp_path / "store.py"
    planted.write_text("from mmssl.train.checkpoint import load\n")
    assert back_imports({"mmssl.data.store": planted}) == [
        "store.py:1: mmssl.data.store (data) imports mmssl.train.checkpoint (train)"]


def test_evaluate_and_maps_do_not_import_train():
    offences = [f"{name}: {target}" for name, path in MODULES.items()
                if name.startswith(("mmssl.evaluate", "mmssl.maps"))
                for _, target, _ in imports(path) if target.startswith("mmssl.train")]
    assert offences == []


def test_no_package_holds_more_than_a_quarter_of_the_lines():
    lines: dict[str, int] = {}
    for name, path in MODULES.items():
        package = ".".join(name.split(".")[:2]) if path.parent != PACKAGE else "mmssl (top level)"
        lines[package] = lines.get(package, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    assert {p: n for p, n in lines.items() if n > total / 4} == {}, sorted(lines.items(), key=lambda kv: -kv[1])


RULES = PACKAGE.parents[0] / "rules"


def test_rules_compare_no_dataset_kind_or_modality_name():
    """The rules ask the registries (PLAN, mmssl.data.kinds, mmssl.paths): no kind name, no
    ``["kind"]`` lookup and no quoted modality in a rule file or the Snakefile."""
    from mmssl.data.kinds import KINDS

    names = [*(f'"{k}"' for k in KINDS), *(f"'{k}'" for k in KINDS), '["kind"]', "['kind']", '"T1w"', '"T2w"', '"FLAIR"', '"bold"', '"fALFF"', '"ALFF"']
    files = [*sorted(RULES.glob("*.smk")), PACKAGE.parents[1] / "Snakefile"]
    offences = [f"{f.name}:{i}: {line.strip()}" for f in files
                for i, line in enumerate(f.read_text().splitlines(), 1)
                if not line.lstrip().startswith("#") and any(n in line for n in names)]
    assert offences == []


def test_common_smk_is_a_thin_adapter():
    """At most 20 helpers (functions) in common.smk, and none in the other rule files
    (Snakemake's linter wants rules and functions apart; the logic is in mmssl.plan)."""
    helpers = {f.name: len(re.findall(r"^def ", f.read_text(), re.M)) for f in RULES.glob("*.smk")}
    assert helpers.pop("common.smk") <= 20 and set(helpers.values()) == {0}
