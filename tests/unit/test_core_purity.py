"""The core/shell line as a package line (docs/DECISIONS.md D1, D73).

The core -- every module of ``grinder.reconcile``, and the pure modules elsewhere listed
in ``PURE_ELSEWHERE`` -- decides over what it is handed. This test reads each of them
(the source, parsed: nothing is imported) and fails when one

* imports anything but the pure standard modules and libraries of ``PURE_IMPORTS``
  (so ``os``, ``sys``, ``time``, ``logging``, ``pathlib``, ``asyncio``, ``json``, ...,
  and every library not on the list, fail), at the top, in a function or under
  ``if TYPE_CHECKING:`` alike;
* imports a ``grinder`` module outside the core (impurity cannot come in through
  another module: every module it may import is checked by the same rule, the packages'
  ``__init__`` modules too);
* reads the clock through ``datetime`` (``now``, ``today``, ``utcnow``) or the local time
  zone (``fromtimestamp`` / ``astimezone`` without a zone) -- ``datetime`` is allowed for
  its types and for converting a time handed in, in UTC;
* calls a builtin that does I/O or imports (``open``, ``print``, ``input``,
  ``__import__``, ``exec``, ``eval``, ``breakpoint``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
CORE = "grinder.reconcile"

NOT_YET: dict[str, str] = {}
"""Modules of the core package not (yet) held to the rule, each with the reason. An entry
whose module is gone fails ``test_every_listed_module_exists``: remove it then."""

PURE_ELSEWHERE: dict[str, str] = {
    "grinder.exchange.port": "what the core asks of a venue: types, errors, protocols",
    "grinder.state.expected": "the expected store's protocols and its memory store",
    "grinder.state.observed": "the observed state, in memory: what the engine compares",
    "grinder.exchange.binance.stream_windows": "the stream's reconnect windows (values)",
    "grinder.exchange.binance.retry_policy": "what follows a failed request (pure policy)",
    "grinder.exchange.binance.errors": "Binance errors -> typed exceptions (the policy's)",
    "grinder.exchange.binance.error_codes": "the error code table (read by errors)",
    "grinder.incidents.records": "the incident record (frozen)",
    "grinder.incidents.record_json": "the record's one JSON form (mappings, not files)",
    "grinder.incidents.facts": "the classifier's frozen facts",
    "grinder.incidents.causes": "an incident's cause from evidence",
    "grinder.incidents.ledger": "the ledger's decisions: open, seen, step, clear, retention",
    "grinder.budget.ledger": "the budget's ledger: a day's and a run's usage, the budget gate",
    "grinder.incidents.trades_plan": "which incidents need the account's trades, and when",
    "grinder.deadman.decision": "whether a dead-man renewal is due or withheld",
    "grinder.service.scheduler": "when the service snapshots and checks, given now",
    "grinder.operator.state": "the operator state document and its JSON form",
    "grinder.operator.decide": "what a control command makes of the operator state",
    "grinder.operator.merge": "the settings in force: configured, replaced by the words",
}
"""Pure modules outside ``grinder.reconcile``: the core's modules may import them, and
they are held to the same rule."""

CLAIMED_NOT_HELD: dict[str, str] = {
    "grinder.console.page": (
        "the console's model: it masks its text with grinder.redaction, whose module also "
        "wraps the process's output streams (sys, io, threading), and formats times with "
        "grinder.incidents.render, which reads the wall clock"
    ),
}
"""Modules whose docstring says pure but which the rule does not hold, with the reason.
``test_claimed_but_not_held_modules_still_break_the_rule`` fails once one passes: then
it belongs in ``PURE_ELSEWHERE``."""

PURE_IMPORTS: frozenset[str] = frozenset(
    {
        "__future__",
        "abc",
        "base64",
        "collections",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "math",
        "operator",
        "re",
        "types",
        "typing",
        "pydantic",
    }
)
"""Every module outside ``grinder`` a pure module may import (a name and its submodules)."""

FORBIDDEN: dict[str, str] = {
    "os": "the environment and files",
    "sys": "the process's streams and state",
    "time": "the clock",
    "logging": "log handlers",
    "pathlib": "files",
    "asyncio": "the event loop, sleeping",
    "socket": "the network",
    "subprocess": "processes",
    "threading": "threads",
    "json": "JSON files (json.load, json.dump)",
    "tomllib": "config files",
    "sqlite3": "a database",
    "redis": "Redis",
    "aiohttp": "HTTP",
    "prometheus_client": "the metrics registry",
    "shutil": "files",
    "tempfile": "files",
    "io": "streams",
    "random": "chance",
    "secrets": "chance",
    "uuid": "chance and the clock",
    "signal": "signals",
    "importlib": "importing by name",
    "urllib.request": "the network",
}
"""Modules a pure module may never import, and why (none is in ``PURE_IMPORTS``)."""

CLOCK_READS = frozenset({"now", "today", "utcnow"})
ZONE_NEEDED = {"fromtimestamp": 2, "astimezone": 1}
"""Calls that read the local time zone unless given one: the positional count that gives it."""
IO_BUILTINS = frozenset({"open", "print", "input", "__import__", "exec", "eval", "breakpoint"})


@dataclass(frozen=True, slots=True)
class Module:
    name: str
    path: Path

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]


def find(name: str) -> Module | None:
    base = SRC.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return Module(name, path)
    return None


def core_modules() -> list[Module]:
    root = SRC.joinpath(*CORE.split("."))
    names = sorted(
        ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for path in root.rglob("*.py")
    )
    return [m for name in names if name not in NOT_YET and (m := find(name)) is not None]


def held_modules() -> list[Module]:
    """The core's modules, the pure modules elsewhere, and every package they sit in."""
    modules = core_modules() + [m for name in PURE_ELSEWHERE if (m := find(name)) is not None]
    packages = {
        ".".join(m.name.split(".")[:i]) for m in modules for i in range(1, m.name.count(".") + 1)
    }
    modules += [m for name in sorted(packages) if (m := find(name)) is not None]
    return sorted({m.name: m for m in modules}.values(), key=lambda m: m.name)


def in_core(name: str) -> bool:
    return name == CORE or name.startswith(CORE + ".")


def may_import_grinder(name: str) -> bool:
    """A module of the core, a listed pure module, or a package one of them sits in (whose
    ``__init__`` is held to the rule with them)."""
    if in_core(name) or name in PURE_ELSEWHERE or name in NOT_YET:
        return True
    return any(m.name == name and m.path.name == "__init__.py" for m in held_modules())


def imported(tree: ast.AST, package: str) -> list[tuple[int, str]]:
    """Every module the source imports, with its line: ``from a import b`` is ``a.b`` when
    ``b`` is a module of ``grinder``, else ``a``; relative imports are resolved."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                is_module = base.split(".")[0] == "grinder" and find(sub) is not None
                found.append((node.lineno, sub if is_module else base))
    return list(dict.fromkeys(found))


def import_problem(name: str) -> str | None:
    if name.split(".")[0] == "grinder":
        if may_import_grinder(name):
            return None
        return f"imports {name}, outside the core (not in PURE_ELSEWHERE)"
    for bad, why in FORBIDDEN.items():
        if name == bad or name.startswith(bad + "."):
            return f"imports {name} ({why})"
    if any(name == ok or name.startswith(ok + ".") for ok in PURE_IMPORTS):
        return None
    return f"imports {name}, not in PURE_IMPORTS"


def call_problem(node: ast.Call) -> str | None:
    func = node.func
    if isinstance(func, ast.Name) and func.id in IO_BUILTINS:
        return f"calls {func.id}() (I/O)"
    if isinstance(func, ast.Attribute) and func.attr in ZONE_NEEDED:
        zone = len(node.args) >= ZONE_NEEDED[func.attr] or any(k.arg == "tz" for k in node.keywords)
        if not zone:
            return f"calls {func.attr}() without a time zone (reads the local zone)"
    return None


def violations(name: str, source: str, package: str | None = None) -> list[str]:
    """What breaks the rule in ``source`` (module ``name``, in ``package``), one line each."""
    tree = ast.parse(source)
    where = name.rpartition(".")[0] if package is None else package
    found = [
        f"{name}:{line}: {problem}"
        for line, module in imported(tree, where)
        if (problem := import_problem(module)) is not None
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in CLOCK_READS:
            found.append(f"{name}:{node.lineno}: reads the clock (.{node.attr})")
        elif isinstance(node, ast.Call) and (problem := call_problem(node)) is not None:
            found.append(f"{name}:{node.lineno}: {problem}")
    return found


def module_violations(module: Module) -> list[str]:
    return violations(module.name, module.path.read_text(encoding="utf-8"), module.package)


# --- the rule, over the code ---------------------------------------------------------------


def test_the_core_and_the_pure_modules_import_nothing_impure() -> None:
    modules = held_modules()
    assert len(modules) >= len(core_modules()) + len(PURE_ELSEWHERE)
    found = [line for module in modules for line in module_violations(module)]
    assert found == [], "\n".join(found)


def test_every_listed_module_exists() -> None:
    for name in [*NOT_YET, *PURE_ELSEWHERE, *CLAIMED_NOT_HELD]:
        assert find(name) is not None, f"{name} is gone: remove its entry"
    for name in NOT_YET:
        assert in_core(name), f"{name}: NOT_YET lists modules of {CORE} only"
    for name in PURE_ELSEWHERE:
        assert not in_core(name), f"{name} is in {CORE}: it is checked without a listing"


def test_the_core_holds_the_modules_that_decide() -> None:
    names = {m.name.removeprefix(CORE + ".") for m in core_modules()}
    assert {"engine", "routing", "gates", "flatten", "identity", "types", "config"} <= names
    moved = {"audit", "logs", "metrics", "report", "remediation", "runner", "flatten_action"}
    assert not names & moved, "reporting and sending belong in the shell"


def test_claimed_but_not_held_modules_still_break_the_rule() -> None:
    for name in CLAIMED_NOT_HELD:
        module = find(name)
        assert module is not None
        assert module_violations(module), f"{name} passes the rule now: list it as pure"


# --- the rule catches what it says it catches ---------------------------------------------


def test_the_lists_do_not_overlap() -> None:
    assert not {name.split(".")[0] for name in FORBIDDEN} & PURE_IMPORTS
    assert not set(PURE_ELSEWHERE) & set(CLAIMED_NOT_HELD)


@pytest.mark.parametrize("name", sorted(FORBIDDEN))
def test_each_forbidden_module_is_caught_however_imported(name: str) -> None:
    top, _, rest = name.partition(".")
    sources = [f"import {name}\n", f"from {name} import x\n", f"import {name}.sub as s\n"]
    sources.append(f"def f() -> None:\n    import {name}\n")
    sources.append(f"if TYPE_CHECKING:\n    from {name} import y\n")
    if rest:
        sources.append(f"from {top} import {rest}\n")
    for source in sources:
        assert violations("grinder.reconcile.sample", source), source


@pytest.mark.parametrize(
    "source",
    [
        "import httpx\n",
        "from grinder.remediation.executor import RemediationExecutor\n",
        "from grinder.reporting import audit\n",
        "from grinder import config_sources\n",
        "from grinder import clock\n",
        "from grinder.clock import Clock\n",
        "if TYPE_CHECKING:\n    from grinder.service.options import ServiceConfig\n",
        "from ..service import options\n",
        "from datetime import datetime\nx = datetime.now()\n",
        "import datetime\nf = datetime.date.today\n",
        "from datetime import datetime\nx = datetime.utcnow()\n",
        "from datetime import datetime\nx = datetime.fromtimestamp(0)\n",
        "x = y.astimezone()\n",
        "text = open('f').read()\n",
        "print('x')\n",
        "m = __import__('os')\n",
    ],
)
def test_impurity_is_caught(source: str) -> None:
    assert violations("grinder.reconcile.sample", source, "grinder.reconcile"), source


def test_a_pure_module_passes() -> None:
    source = (
        "from __future__ import annotations\n"
        "from collections.abc import Iterable\n"
        "from datetime import UTC, datetime\n"
        "from decimal import Decimal\n"
        "from grinder.reconcile.types import ZERO\n"
        "from grinder.exchange.port import ExchangeError\n"
        "from . import labels\n"
        "def utc(ms: int) -> str:\n"
        "    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat()\n"
        "def also(ms: int) -> datetime:\n"
        "    return datetime.fromtimestamp(ms / 1000, UTC).astimezone(UTC)\n"
    )
    assert violations("grinder.reconcile.sample", source, "grinder.reconcile") == []
