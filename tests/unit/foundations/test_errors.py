"""The error tree: every error the package raises is caught by exactly one kind.

``except UsageError`` (fix your code), ``except GuardRuntimeError`` (this request or this
environment failed) and ``except GuardrailViolation`` (the policy blocked the input) must
each catch their own errors and nothing else, so an application can retry, report or
refuse by kind.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import HumanMessage

import safeclip_guardrail
from safeclip_guardrail import (
    ConceptBank,
    ConfigurationError,
    EncoderOutputError,
    GuardConfig,
    GuardrailViolation,
    GuardRuntimeError,
    ImageInputError,
    ImageOptions,
    MissingDependencyError,
    ModelLoadError,
    SafeCLIPError,
    SafeCLIPGuard,
    SafeCLIPGuardrail,
    UsageError,
    errors,
)
from safeclip_guardrail.errors import BatcherStopped, ServiceError, require
from safeclip_guardrail.eval import CalibrationError, calibrate, load_dataset
from safeclip_guardrail.langchain import merge_guardrails
from safeclip_guardrail.serve._body import parse_json
from safeclip_guardrail.testing import PlantedEncoder

KINDS = (UsageError, GuardRuntimeError, GuardrailViolation)


def _raise_calibration(tmp_path: Path, planted: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    (tmp_path / "gun").mkdir()
    (tmp_path / "gun" / "a.png").write_bytes(planted.plant_bytes("gun"))
    calibrate(guard, load_dataset(tmp_path, bank=guard.bank), target_fpr=0.1, show_progress=False)


def _blocked(planted: PlantedEncoder, guard: SafeCLIPGuard) -> None:
    import base64

    data = base64.b64encode(planted.plant_bytes("gun")).decode()
    SafeCLIPGuardrail(guard=guard, mode="block").invoke(
        [HumanMessage(content=[{"type": "image", "base64": data, "mime_type": "image/png"}])])


def _judge_unstarted() -> None:
    from safeclip_guardrail.images.sources import EncodedImage
    from safeclip_guardrail.serve import MicroBatcher

    asyncio.run(MicroBatcher(lambda images: []).judge([EncodedImage(b"x")]))


def cases(tmp_path: Path, planted: PlantedEncoder, guard: SafeCLIPGuard,
          ) -> dict[str, tuple[type[SafeCLIPError], type[SafeCLIPError], Callable[[], object]]]:
    """name -> (expected class, expected kind, a call through the public API that raises it)."""
    strict = guard.with_options(on_error="raise")
    return {
        "config value": (ConfigurationError, UsageError, lambda: GuardConfig(threshold=2.0)),
        "image options": (ConfigurationError, UsageError, lambda: ImageOptions(allow_urls=True)),
        "concept bank": (ConfigurationError, UsageError, lambda: ConceptBank(classes=())),
        "bank file": (ConfigurationError, UsageError,
                      lambda: ConceptBank.from_file(tmp_path / "missing.yaml")),
        "runnable option": (ConfigurationError, UsageError,
                            lambda: SafeCLIPGuardrail(guard=guard, mode="shout")),  # type: ignore[arg-type]
        "one string as a batch": (ConfigurationError, UsageError,
                                  lambda: guard.check_batch("photo.jpg")),
        "missing extra": (MissingDependencyError, UsageError,
                          lambda: require("no_such_module_xyz", package="x", extra="x", feature="X")),
        "unreadable image": (ImageInputError, GuardRuntimeError,
                             lambda: strict.check(b"not an image at all")),
        "non-finite embedding": (EncoderOutputError, GuardRuntimeError,
                                 lambda: strict.score_embeddings(
                                     np.full((1, planted.embed_dim), np.nan, np.float32))),
        "model load": (ModelLoadError, GuardRuntimeError,
                       lambda: SafeCLIPGuard.from_pretrained(str(tmp_path / "no-model"))),
        "calibration": (CalibrationError, GuardRuntimeError,
                        lambda: _raise_calibration(tmp_path, planted, guard)),
        "blocked input": (GuardrailViolation, GuardrailViolation, lambda: _blocked(planted, guard)),
        "not a LangChain input": (ConfigurationError, UsageError,
                                  lambda: SafeCLIPGuardrail(guard=guard).invoke(42)),
        "parallel branches disagree": (ConfigurationError, UsageError,
                                       lambda: merge_guardrails.invoke(
                                           {"a": [HumanMessage("x")], "b": []})),
        "service body": (ServiceError, GuardRuntimeError, lambda: parse_json(b'{"a": NaN}')),
        "batcher not started": (BatcherStopped, GuardRuntimeError, _judge_unstarted),
    }


CASE_NAMES = ["config value", "image options", "concept bank", "bank file", "runnable option",
              "one string as a batch", "missing extra", "unreadable image",
              "non-finite embedding", "model load", "calibration", "blocked input",
              "not a LangChain input", "parallel branches disagree", "service body",
              "batcher not started"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_error_is_caught_by_exactly_its_kind(name: str, tmp_path: Path,
                                                  planted: PlantedEncoder,
                                                  planted_guard: SafeCLIPGuard) -> None:
    expected, kind, call = cases(tmp_path, planted, planted_guard)[name]
    with pytest.raises(SafeCLIPError) as info:
        call()
    assert type(info.value) is expected, f"{name}: {type(info.value).__name__}"
    matching = [k for k in KINDS if isinstance(info.value, k)]
    assert matching == [kind]
    assert str(info.value)  # a message a person can act on


def test_every_case_is_listed() -> None:
    import inspect

    source = inspect.getsource(cases)
    assert all(f'"{n}"' in source for n in CASE_NAMES)


def test_the_tree_has_three_disjoint_branches() -> None:
    for a in KINDS:
        for b in KINDS:
            assert (a is b) == issubclass(a, b)
    for cls in (ConfigurationError, MissingDependencyError):
        assert issubclass(cls, UsageError) and not issubclass(cls, GuardRuntimeError)
    for cls in (ImageInputError, EncoderOutputError, ModelLoadError, CalibrationError):
        assert issubclass(cls, GuardRuntimeError) and not issubclass(cls, UsageError)
    # the builtin bases stay, so older `except ValueError` code keeps working
    assert issubclass(ConfigurationError, ValueError) and issubclass(ImageInputError, ValueError)


# ------------------------------------------------------------------ one home, one tree
# The checks below read the whole package, so a class defined elsewhere, a class missing
# from the tree, or a builtin raised at a user cannot come back unnoticed.

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "safeclip_guardrail"
INTEGRATIONS = sorted(p for p in (ROOT / "integrations").glob("*/safeclip_guardrail_*")
                      if p.is_dir())

PRIVATE_EXCEPTIONS = {
    # class -> the functions that raise it; every other module that calls them catches it
    "safeclip_guardrail.images._carve.Broken": ("jpeg_records", "png_records"),
}
"""Exceptions that never leave the package: a structure walk that does not walk is an
answer ("these bytes are not one clean picture"), caught where the walk is called."""

BUILTIN_RAISES_ALLOWED = {
    # (file, exception): why a builtin is right there
    ("safeclip_guardrail/__init__.py", "AttributeError"): "module __getattr__ (PEP 562)",
    ("safeclip_guardrail/langchain/__init__.py", "AttributeError"): "module __getattr__",
    ("safeclip_guardrail/encoders/_torch.py", "NotImplementedError"):
        "abstract methods of the torch encoder base, overridden by each backend",
    ("safeclip_guardrail/testing/trust/_contract.py", "NotImplementedError"):
        "the contract's run()/placements(), which each surface's test subclass implements",
    ("safeclip_guardrail/images/_deadline.py", "TimeoutError"):
        "a socket timing out, as http.client expects; fetch_url turns it into ImageInputError",
    ("safeclip_guardrail/images/_fetch.py", "TimeoutError"):
        "the fetch deadline inside fetch_url/_check_url, which raise ImageInputError for it",
    ("safeclip_guardrail/cli/_common.py", "SystemExit"):
        "argparse's error() contract: exit code 2 after the one-line message",
    ("safeclip_guardrail/cli/_serve_ray.py", "KeyboardInterrupt"):
        "SIGTERM handled like Ctrl-C so Ray Serve shuts down the same way",
}
FOREIGN_RAISES_ALLOWED = {
    ("safeclip_guardrail/cli/_common.py", "ArgumentTypeError"): "argparse type= callbacks",
    ("safeclip_guardrail/cli/calibrate.py", "ArgumentTypeError"): "argparse type= callbacks",
    ("safeclip_guardrail/cli/scan_corpus.py", "ArgumentTypeError"): "argparse type= callbacks",
    ("safeclip_guardrail/serve/schemas.py", "PydanticCustomError"):
        "pydantic validators; the service answers the ValidationError as a 400",
    ("integrations/litellm/safeclip_guardrail_litellm/guardrail.py", "HTTPException"):
        "how a LiteLLM guardrail hook answers the proxy's caller",
}
BUILTIN_EXCEPTIONS = frozenset(n for n in dir(builtins) if isinstance(getattr(builtins, n), type)
                               and issubclass(getattr(builtins, n), BaseException))


def _sources() -> dict[str, ast.Module]:
    files = [*PACKAGE.rglob("*.py"), *(p for d in INTEGRATIONS for p in d.rglob("*.py"))]
    return {p.relative_to(ROOT).as_posix(): ast.parse(p.read_text(encoding="utf-8"))
            for p in sorted(files)}


def _core_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.walk_packages(safeclip_guardrail.__path__,
                                                   "safeclip_guardrail.")
             if not m.name.endswith("__main__")]  # __main__ runs the CLI
    return [importlib.import_module(n) for n in names]


def _exception_classes(module: ModuleType) -> Iterator[type[BaseException]]:
    """Exception classes defined in ``module``, at top level or inside its classes."""
    stack = [v for v in vars(module).values() if inspect.isclass(v)]
    while stack:
        cls = stack.pop()
        if cls.__module__ != module.__name__:
            continue
        if issubclass(cls, BaseException):
            yield cls
        stack.extend(v for v in vars(cls).values() if inspect.isclass(v))


def _name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def _looks_like_an_exception(base: ast.expr) -> bool:
    name = _name(base)
    return (name in BUILTIN_EXCEPTIONS or name in errors.__all__
            or name.endswith(("Error", "Exception", "Exit", "Interrupt")))


def test_every_exception_class_is_defined_in_errors_py() -> None:
    found: dict[str, type[BaseException]] = {}
    for module in _core_modules():
        for cls in _exception_classes(module):
            found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    elsewhere = sorted(n for n in found if not n.startswith("safeclip_guardrail.errors.")
                       and n not in PRIVATE_EXCEPTIONS)
    assert not elsewhere, f"define these in safeclip_guardrail/errors.py: {elsewhere}"
    assert set(PRIVATE_EXCEPTIONS) <= set(found)  # the list does not go stale
    for name, cls in found.items():
        if name not in PRIVATE_EXCEPTIONS:
            assert issubclass(cls, SafeCLIPError), name
    # classes inside functions, and the integrations (read, not imported: their frameworks
    # are slow to import and they are checked by name against the same rule)
    nested = [f"{file}:{node.lineno} {node.name}"
              for file, tree in _sources().items()
              for scope in ast.walk(tree) if not isinstance(scope, ast.Module)
              for node in ast.iter_child_nodes(scope)
              if isinstance(node, ast.ClassDef) and any(map(_looks_like_an_exception, node.bases))
              and (file.startswith("integrations/") or not isinstance(scope, ast.ClassDef))]
    top = [f"{file}:{node.lineno} {node.name}"
           for file, tree in _sources().items() if file.startswith("integrations/")
           for node in tree.body
           if isinstance(node, ast.ClassDef) and any(map(_looks_like_an_exception, node.bases))]
    assert not nested + top, f"define these in safeclip_guardrail/errors.py: {nested + top}"


def test_private_exceptions_never_escape() -> None:
    """Whoever calls a function raising a private exception catches it."""
    for qualified, raisers in PRIVATE_EXCEPTIONS.items():
        home, _, cls = qualified.rpartition(".")
        for file, tree in _sources().items():
            calls = {_name(n) for n in ast.walk(tree) if isinstance(n, ast.Call)}
            if not calls & {*raisers, cls}:
                continue
            caught = {_name(t) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler)
                      and h.type is not None
                      for t in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type])}
            assert cls in caught, f"{file} calls {sorted(calls & set(raisers))} without catching {cls}"
            if file != home.replace(".", "/") + ".py":
                assert "_carve" in home and file.startswith("safeclip_guardrail/")


def _drawn_tree() -> dict[str, str | None]:
    """``name -> parent`` from the tree at the top of errors.py."""
    drawn: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        match = re.match(r"^    ((?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)(?:\s|$)", line)
        if match is None or ("──" not in line and match.group(2) != "SafeCLIPError"):
            continue
        depth = len(match.group(1)) // 4 + (1 if "──" in line else 0)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[match.group(2)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(2)))
    return drawn


def test_the_tree_in_the_docstring_is_the_tree_in_the_code() -> None:
    drawn = _drawn_tree()
    defined = {name for name, cls in vars(errors).items()
               if inspect.isclass(cls) and issubclass(cls, BaseException)
               and cls.__module__ == errors.__name__ and not name.startswith("_")}
    assert set(drawn) == defined, (sorted(defined - set(drawn)), sorted(set(drawn) - defined))
    assert defined <= set(errors.__all__)
    for name, parent in drawn.items():
        cls = getattr(errors, name)
        if parent is None:
            assert cls is SafeCLIPError
        else:
            assert getattr(errors, parent) in cls.__bases__, f"{name} is drawn under {parent}"
    kinds = {name: next(k.__name__ for k in KINDS if issubclass(getattr(errors, name), k))
             for name in defined if name != "SafeCLIPError"}
    assert set(kinds.values()) == {k.__name__ for k in KINDS}  # every class has exactly one kind


def test_public_import_paths_are_re_exports() -> None:
    import safeclip_guardrail.cli as cli
    import safeclip_guardrail.eval as ev
    import safeclip_guardrail.scale.serve as scale_serve
    import safeclip_guardrail.serve as serve
    import safeclip_guardrail.serve.batcher as batcher

    assert cli.CliError is errors.CliError
    calibrate_module = importlib.import_module("safeclip_guardrail.eval.calibrate")  # (the
    # package's `calibrate` attribute is the function of that name)
    assert ev.CalibrationError is calibrate_module.CalibrationError is errors.CalibrationError
    assert serve.BatcherOverloaded is batcher.BatcherOverloaded is errors.BatcherOverloaded
    assert serve.BatcherStopped is batcher.BatcherStopped is errors.BatcherStopped
    assert scale_serve.ServeDeployError is errors.ServeDeployError
    remote = _sources()["integrations/litellm/safeclip_guardrail_litellm/remote.py"]
    assert any(isinstance(n, ast.ImportFrom) and n.module == "safeclip_guardrail.errors"
               and "GuardServiceError" in {a.name for a in n.names} for n in remote.body)


def test_no_builtin_exception_is_raised_at_a_user() -> None:
    """A builtin (or a framework's exception) is raised only where a protocol asks for it."""
    seen: set[tuple[str, str]] = set()
    bad: list[str] = []
    for file, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                name = _name(node.exc)
            elif isinstance(node, ast.Call) and _name(node) in BUILTIN_EXCEPTIONS:
                name = _name(node)  # built here, raised later (e.g. batch return_exceptions)
            else:
                continue
            foreign = name.endswith(("Error", "Exception")) and name not in errors.__all__
            if name in BUILTIN_EXCEPTIONS or foreign:
                key = (file, name)
                seen.add(key)
                if key not in BUILTIN_RAISES_ALLOWED and key not in FOREIGN_RAISES_ALLOWED:
                    bad.append(f"{file}:{node.lineno} raises {name}")
    assert not bad, "raise a typed error from safeclip_guardrail.errors:\n" + "\n".join(bad)
    assert seen >= set(BUILTIN_RAISES_ALLOWED) | set(FOREIGN_RAISES_ALLOWED)  # not stale


def test_the_checks_can_fail() -> None:
    """The readers above see what they must (not vacuous)."""
    tree = ast.parse("def f():\n    class Oops(ValueError): ...\n    raise KeyError('k')\n")
    assert [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
            and any(map(_looks_like_an_exception, n.bases))] == ["Oops"]
    assert [_name(n.exc) for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.exc] == ["KeyError"]
    assert _drawn_tree()["CliError"] == "UsageError"
    assert _drawn_tree()["RayScanError"] == "GuardRuntimeError"


@pytest.mark.parametrize(("body", "says"), [
    (b'{"a": 1, "a": 2}', "the key 'a' appears twice in one object"),
    (b'{"a": NaN}', "NaN is not a JSON number; send finite numbers"),
    (b'{"a": 1e999}', "the number 1e999 is too large for a float"),
    (b"[1,", "Expecting value"),
])
def test_a_hostile_body_is_a_400_that_says_why(body: bytes, says: str) -> None:
    with pytest.raises(ServiceError) as info:
        parse_json(body)
    assert info.value.status == 400 and info.value.code == "invalid_json"
    assert info.value.message.startswith("the body is not valid JSON: ") and says in info.value.message


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_a_server_whose_app_fails_to_start_is_a_runtime_error() -> None:
    from safeclip_guardrail.serve import BackgroundServer

    async def app(scope: dict[str, object], receive: Callable[[], Any],
                  send: Callable[[dict[str, object]], Any]) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "the model could not load"})

    with pytest.raises(GuardRuntimeError, match="stopped while starting"):
        BackgroundServer(app, log_level="critical").start()
