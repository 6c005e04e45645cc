"""The defense registry: one list, a union derived from it, no import cycle, and room for one more.

The last group defines a whole defense (config and class) in this module and registers it from
outside the package, which is what adding a defense amounts to: one file, its test, one
registry line.
"""

from __future__ import annotations

import ast
import graphlib
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
from pydantic import Field, TypeAdapter, ValidationError

import securevfl.defenses as defenses_package
from securevfl.config import ProtectionConfig, validate_config
from securevfl.schemes import scheme_for
from securevfl.defenses import (
    DEFENSES,
    AdditiveNoise,
    Defense,
    DefenseConfig,
    DefenseConfigBase,
    GaussianNoise,
    MessageContext,
    Placement,
    PlacementError,
    build_defense,
    defense_class,
    parse_defense_config,
    register_defense,
)
from securevfl.defenses.pipeline import DefensePipeline
from securevfl.defenses.registry import BUILT_IN, config_union
from securevfl.study.table import describe_defenses

PACKAGE = "securevfl.defenses"
PACKAGE_DIR = Path(defenses_package.__file__).parent


# ---------------------------------------------------------------------- import graph
def _is_type_checking_guard(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_modules(tree: ast.Module, module: str) -> set[str]:
    """Intra-package modules ``module`` imports anywhere (functions included), except under TYPE_CHECKING.

    Imports inside functions count: a lazy import is how a cycle hides, and hiding it is what
    this check is for. ``from securevfl.defenses import x`` is an import of the package's
    ``__init__`` unless ``x`` is a submodule.
    """
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking_guard(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                parent = PACKAGE.rsplit(".", node.level - 1)[0] if node.level > 1 else PACKAGE
                base = f"{parent}.{node.module}" if node.module else parent
            else:
                base = node.module or ""
            if base == PACKAGE:
                for alias in node.names:
                    submodule = f"{PACKAGE}.{alias.name}"
                    found.add(submodule if (PACKAGE_DIR / f"{alias.name}.py").is_file() else PACKAGE)
            else:
                found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")} - {module}


def _import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        module = PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"
        graph[module] = _imported_modules(ast.parse(path.read_text(encoding="utf-8")), module)
    return graph


def test_no_import_cycle_inside_the_package() -> None:
    graph = _import_graph()
    # the parser sees the real edges (an empty graph would pass trivially)
    assert graph[f"{PACKAGE}.registry"] >= {f"{PACKAGE}.{m}" for m in ("base", "noise", "clipping", "sparsification")}
    assert graph[f"{PACKAGE}.noise"] == {f"{PACKAGE}.base"}
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle inside {PACKAGE}: {' -> '.join(exc.args[1])}")
    assert order.index(f"{PACKAGE}.base") < order.index(f"{PACKAGE}.registry") < order.index(PACKAGE)


def test_the_cycle_check_sees_lazy_imports() -> None:
    lazy = ast.parse("def f():\n    from securevfl.defenses.registry import defense_class\n")
    guarded = ast.parse("if TYPE_CHECKING:\n    from securevfl.defenses.registry import DEFENSES\n")
    assert _imported_modules(lazy, f"{PACKAGE}.base") == {f"{PACKAGE}.registry"}
    assert _imported_modules(guarded, f"{PACKAGE}.base") == set()
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter({"a": {"b"}, "b": {"a"}}).prepare()


# ---------------------------------------------------------------------- the registry and the union
def test_registry_is_the_built_in_list() -> None:
    assert tuple(DEFENSES.values()) == BUILT_IN
    assert list(DEFENSES) == ["gaussian_noise", "laplace_noise", "sparsification", "norm_clipping", "label_dp"]


@pytest.mark.parametrize("cls", BUILT_IN, ids=lambda cls: cls.name)
def test_each_class_is_selected_by_its_configs_kind(cls: type[Defense]) -> None:
    kind = cls.config_type.model_fields["kind"]
    assert kind.default == cls.name
    assert typing.get_args(kind.annotation) == (cls.name,)
    assert defense_class(cls.name) is cls
    assert issubclass(cls.config_type, DefenseConfigBase)


def test_the_union_accepts_exactly_the_registered_kinds() -> None:
    union, discriminator = typing.get_args(DefenseConfig)
    assert discriminator.discriminator == "kind"
    assert set(typing.get_args(union)) == {cls.config_type for cls in BUILT_IN}
    mapping = TypeAdapter(DefenseConfig).json_schema()["discriminator"]["mapping"]
    assert set(mapping) == set(DEFENSES)
    with pytest.raises(ValidationError, match="'gaussian_noise', 'laplace_noise', 'sparsification', 'norm_clipping', 'label_dp'"):
        parse_defense_config({"kind": "dropout", "rate": 0.5})


# ---------------------------------------------------------------------- labels for tables
def _label_as_the_table_wrote_it(defense: dict[str, Any]) -> str:
    """The study table's own formatting before defenses described themselves (kept as the reference)."""
    knob = next((f"{k}={defense[k]:g}" for k in ("variance", "drop_rate", "max_norm") if k in defense), "")
    return f"{defense['kind']}({', '.join(p for p in (knob, defense.get('on', ''), defense.get('placement', '')) if p)})"


LABELLED = [
    ({"kind": "gaussian_noise", "variance": 0.0001}, "gaussian_noise(variance=0.0001, gradient, pre_encryption)"),
    ({"kind": "gaussian_noise", "variance": 1e-5, "placement": "under_encryption"}, "gaussian_noise(variance=1e-05, gradient, under_encryption)"),
    ({"kind": "laplace_noise", "variance": 2, "on": "activation", "placement": "post_decryption"}, "laplace_noise(variance=2, activation, post_decryption)"),
    # (residual = "none", formerly accumulate = false, now names itself: tests/defenses/test_sparsification_residual.py)
    ({"kind": "sparsification", "drop_rate": 0.999, "selection": "random"}, "sparsification(drop_rate=0.999, gradient, pre_encryption)"),
    ({"kind": "norm_clipping", "max_norm": 1.5}, "norm_clipping(max_norm=1.5, gradient, pre_encryption)"),
]


@pytest.mark.parametrize(("raw", "label"), LABELLED, ids=[raw["kind"] for raw, _ in LABELLED])
def test_each_config_labels_itself_as_the_table_did(raw: dict[str, Any], label: str) -> None:
    config = parse_defense_config(raw)
    dumped = config.model_dump(mode="json")  # what a run config stores
    assert config.label() == label == _label_as_the_table_wrote_it(dumped)
    assert describe_defenses([dumped]) == label


def test_the_table_joins_labels_and_knows_no_knob() -> None:
    dumped = [parse_defense_config(raw).model_dump(mode="json") for raw, _ in LABELLED[:2]]
    assert describe_defenses(dumped) == " + ".join(label for _, label in LABELLED[:2])
    assert describe_defenses([]) == "none"
    assert not _code_words(PACKAGE_DIR.parent / "study" / "table.py") & {"variance", "drop_rate", "max_norm", "on", "placement"}


def _code_words(path: Path) -> set[str]:
    """Identifiers, attribute names and string constants of a module's code (docstrings left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.add(node.id)
        elif isinstance(node, ast.Attribute):
            words.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.add(node.value)
    return words


# ---------------------------------------------------------------------- adding a defense from outside
class ShiftConfig(DefenseConfigBase):
    """Add a constant to every entry (a test defense: trivial, but a real one)."""

    kind: Literal["test_shift"] = "test_shift"
    shift: float = Field(gt=0, description="the constant added")

    label_knobs = ("shift",)


class Shift(Defense):
    """Adds ``config.shift`` to every real entry; plaintext placements only."""

    name: ClassVar[str] = "test_shift"
    config_type = ShiftConfig
    config: ShiftConfig
    impossible = {Placement.UNDER_ENCRYPTION: "this test defense has no homomorphic form"}

    def _transform(self, real: np.ndarray, ctx: MessageContext) -> np.ndarray:
        return real + real.dtype.type(self.config.shift)


@contextmanager
def registry_restored() -> Iterator[None]:
    """Whatever a test registers is gone afterwards, so other tests see the built-in list."""
    saved = dict(DEFENSES)
    try:
        yield
    finally:
        DEFENSES.clear()
        DEFENSES.update(saved)


@pytest.fixture
def with_shift() -> Iterator[type[Shift]]:
    with registry_restored():
        register_defense(Shift)  # the one registry line
        yield Shift


def test_a_defense_registered_from_outside_parses_builds_and_runs(with_shift: type[Shift]) -> None:
    config = parse_defense_config({"kind": "test_shift", "shift": 0.5, "on": "activation", "placement": "post_decryption"})
    assert type(config) is ShiftConfig
    assert parse_defense_config(config.model_dump(mode="json")) == config
    assert config.label() == "test_shift(shift=0.5, activation, post_decryption)"
    defense = build_defense(config, np.random.default_rng(0), preset_depth=0)
    assert type(defense) is with_shift and defense_class("test_shift") is with_shift

    message = np.zeros((4, 3))
    message[:3] = 1.0
    ctx = MessageContext(kind="activation", sender="passive_1", receiver="active", step=0, rows=3)
    out = defense.apply(message, ctx)
    np.testing.assert_array_equal(out[:3], 1.5)
    np.testing.assert_array_equal(out[3], 0.0)  # padding untouched, by the base class

    with pytest.raises(PlacementError, match="no homomorphic form"):
        build_defense(config.model_copy(update={"placement": Placement.UNDER_ENCRYPTION}), np.random.default_rng(0), preset_depth=2)
    pipeline = DefensePipeline.build([config], scheme_for(ProtectionConfig(scheme="ckks", key_holder="receiver")), seed=0)
    assert pipeline.defenses[0].name == "test_shift"
    # the built-in kinds are unaffected; the DefenseConfig union declared at import keeps the built-in kinds,
    # while a run configuration validates each [[defense]] table against the registry as it is now
    assert type(parse_defense_config({"kind": "gaussian_noise", "variance": 1.0})).__name__ == "GaussianNoiseConfig"
    assert TypeAdapter(config_union()).validate_python({"kind": "test_shift", "shift": 1.0}) == ShiftConfig(shift=1.0)
    with pytest.raises(ValidationError):
        TypeAdapter(DefenseConfig).validate_python({"kind": "test_shift", "shift": 1.0})
    run = validate_config({"defense": [{"kind": "test_shift", "shift": 2.0, "on": "activation", "placement": "post_decryption"}]})
    assert run.defense == [ShiftConfig(shift=2.0, on="activation", placement="post_decryption")]
    assert run.resolved()["defense"][0]["shift"] == 2.0


def test_registration_is_undone_after_the_test() -> None:
    with registry_restored():
        register_defense(Shift)
        assert "test_shift" in DEFENSES
    assert tuple(DEFENSES.values()) == BUILT_IN
    with pytest.raises(ValidationError, match="does not match any of the expected tags"):
        parse_defense_config({"kind": "test_shift", "shift": 1.0})
    with pytest.raises(KeyError, match="unknown defense kind 'test_shift'"):
        defense_class("test_shift")


def test_register_refuses_what_could_not_be_selected() -> None:
    class Unnamed(Shift):
        pass

    class WrongKind(Shift):
        name: ClassVar[str] = "other_shift"

    class Impostor(Shift):
        name: ClassVar[str] = "gaussian_noise"
        config_type = GaussianNoise.config_type

    with registry_restored():
        register_defense(GaussianNoise)  # the same class again: nothing changes
        assert tuple(DEFENSES.values()) == BUILT_IN
        with pytest.raises(TypeError, match="concrete Defense subclass"):
            register_defense(AdditiveNoise)
        with pytest.raises(TypeError, match="concrete Defense subclass"):
            register_defense(ShiftConfig)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must set its own `name`"):
            register_defense(Unnamed)
        with pytest.raises(TypeError, match=r"kind must be Literal\['other_shift'\]"):
            register_defense(WrongKind)
        with pytest.raises(ValueError, match="already registered to GaussianNoise"):
            register_defense(Impostor)
        assert tuple(DEFENSES.values()) == BUILT_IN
