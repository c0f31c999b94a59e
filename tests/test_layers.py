"""The package's imports follow the data: envs -> sampling -> pipeline -> methods -> run ->
tools, with leaf helpers below them all and the commands on top. A module imports only from
its own layer or those below it (function-level imports included)."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "trpo_tf"
# the layer order, written once; a module's layer is its subpackage, or its name at the top
ORDER = (
    ("__init__", "errors", "flat", "graph", "moments", "seeding", "settings", "distributions",
     "policies", "tf_logs", "cli"),                          # leaf helpers
    ("envs",), ("sampling",), ("pipeline",), ("methods",),
    ("config",),                                             # the settings of every stage
    ("run",),
    ("launch",),                                             # flags -> Config -> a run
    ("tools",),
    ("play", "plot", "sweep", "table1", "tune"),             # the tools' entry points
)
RANK = {name: rank for rank, names in enumerate(ORDER) for name in names}


def layer(module):
    """The rank of `trpo_tf.<name>...`, or None outside the package."""
    parts = module.split(".")
    return RANK[parts[1]] if parts[0] == "trpo_tf" and len(parts) > 1 else None


def imports(path):
    """Every trpo_tf module `path` imports, at any depth of its code."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names
                        if node.module == "trpo_tf")


def test_no_module_imports_from_a_layer_above_its_own():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("trpo_tf",) + path.relative_to(PACKAGE).with_suffix("").parts)
        own = layer(module)
        assert own is not None, f"{module} has no layer in ORDER"
        upward += [f"{module} -> {name}" for name in imports(path)
                   if (rank := layer(name)) is not None and rank > own]
    assert upward == []
