"""The operator state's pure parts (the merge, the commands, a lost document) and its file."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from grinder.config_sources import RuntimeEnv
from grinder.operator.decide import ChangeKind, Lift, SetWord, decide, judge
from grinder.operator.merge import Source, Sourced, effective, held
from grinder.operator.state import (
    OperatorRefused,
    OperatorState,
    OperatorStateError,
    Stamp,
    Word,
    check_by,
    check_reason,
)
from grinder.operator.stores import UNCHANGED, FileOperatorStore, MemoryOperatorStore
from grinder.reconcile.config import ConfigError, ReconcileConfig
from grinder.service.configured import configured, settings_of
from grinder.service.operator import OperatorControl
from tests.support.controls import STAMP, make_controls

T = 1_767_225_600_000
ALICE = Stamp("alice@host1", T, "incident 42")
BOB = Stamp("bob@host2", T + 1000, None)


def configured_settings(**values: object) -> dict[str, Sourced]:
    """Every setting at its default, with ``values`` from the file."""
    config = ReconcileConfig.model_validate({k: v for k, v in values.items() if k != "armed"})
    origins = dict.fromkeys(values, (Source.FILE, "/etc/grinder/grinder.toml [reconcile]"))
    return settings_of(config, bool(values.get("armed", False)), True, origins)


def given(*commands: SetWord | Lift) -> OperatorState:
    state = OperatorState()
    for command in commands:
        state = decide(state, command, new_id="doc1").state
    return state


# --- the merge: effective = configured, bounded by the standing rollback -----------------------


def test_with_no_word_every_setting_is_its_configured_value_and_source() -> None:
    live = configured_settings(action="flatten", dry_run=False, armed=True)
    in_force = effective(live, OperatorState())
    assert in_force == live
    assert in_force["action"] == Sourced(
        "flatten", Source.FILE, "/etc/grinder/grinder.toml [reconcile]"
    )
    assert in_force["max_orders_per_action"].source is Source.DEFAULT
    assert held(live, in_force) == ()


@pytest.mark.parametrize(
    ("command", "field", "value", "name"),
    [
        (SetWord("action", "none", ALICE), "action", "none", "action-none"),
        (SetWord("dry_run", True, ALICE), "dry_run", True, "dry-run"),
        (SetWord("armed", False, ALICE), "armed", False, "disarm"),
        (
            SetWord("allow_mainnet_trade", False, ALICE),
            "allow_mainnet_trade",
            False,
            "deny-mainnet",
        ),
    ],
)
def test_a_rollback_holds_its_setting_whatever_the_file_says(
    command: SetWord, field: str, value: object, name: str
) -> None:
    state = given(command)
    # The file says live on every gate, the environment opened gate 5.
    live = configured_settings(action="flatten", dry_run=False, armed=True)
    in_force = effective(live, state)
    assert in_force[field] == Sourced(value, Source.ROLLBACK, name, ALICE)
    (hold,) = held(live, in_force)
    assert (hold.field, hold.in_force.value) == (field, value)
    assert "not applied; in force" in hold.describe()
    assert "rollback " + name in hold.describe()
    # What the file says changes only what is not held.
    other = configured_settings(
        action="flatten", dry_run=False, armed=True, max_orders_per_action=1
    )
    assert effective(other, state)[field].value == value
    assert effective(other, state)["max_orders_per_action"].value == 1


def test_a_setting_word_replaces_the_configured_value_and_says_who() -> None:
    state = given(SetWord("max_orders_per_action", 1, BOB))
    in_force = effective(configured_settings(max_orders_per_action=5), state)
    assert in_force["max_orders_per_action"] == Sourced(1, Source.OPERATOR, "", BOB)
    assert in_force["max_orders_per_action"].describe().startswith("1 (operator by bob@host2 at ")


# --- the commands ------------------------------------------------------------------------------


def test_an_escalation_is_refused_while_the_rollback_stands_and_says_how_to_lift_it() -> None:
    state = given(SetWord("armed", False, ALICE))
    with pytest.raises(OperatorRefused) as info:
        decide(state, SetWord("armed", True, BOB), new_id="x")
    message = str(info.value)
    assert "the rollback disarm stands on armed (by alice@host1 at 2026-01-01T00:00:00Z" in message
    assert "(reason: incident 42)" in message
    assert message.endswith("lift it first: grinder control lift disarm")
    for field, value in (("action", "cancel_all"), ("dry_run", False)):
        with pytest.raises(OperatorRefused, match="lift it first"):
            decide(
                given(SetWord(field, {"action": "none", "dry_run": True}[field], ALICE)),
                SetWord(field, value, BOB),
                new_id="x",
            )


def test_a_rollback_replaces_an_escalation_and_a_lift_returns_to_the_configured_value() -> None:
    state = given(SetWord("armed", True, BOB))
    decision = decide(state, SetWord("armed", False, ALICE), new_id="x")
    assert decision.changes[0].kind is ChangeKind.ROLLBACK
    assert decision.state.revision == 2
    lifted = decide(decision.state, Lift("disarm", BOB), new_id="x")
    assert lifted.changes[0].kind is ChangeKind.LIFT
    assert lifted.state.words == ()
    assert lifted.state.last == BOB
    assert effective(configured_settings(), lifted.state)["armed"].source is Source.DEFAULT


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bogus", "lift: unknown name 'bogus'; expected a rollback (action-none, dry-run, disarm"),
        ("disarm", "nothing to lift: the rollback disarm does not stand (no word on armed)"),
        ("max_orders_per_action", "nothing to lift: no operator word on max_orders_per_action"),
        ("all", "nothing to lift: no rollback or other operator word stands"),
    ],
)
def test_lift_refuses_an_unknown_name_and_what_does_not_stand(name: str, message: str) -> None:
    with pytest.raises(OperatorRefused) as info:
        decide(given(), Lift(name, ALICE), new_id="x")
    assert str(info.value).startswith(message)


def test_lift_by_rollback_name_setting_name_or_all() -> None:
    state = given(
        SetWord("armed", False, ALICE),
        SetWord("dry_run", False, BOB),
        SetWord("allow_mainnet_trade", False, ALICE),
    )
    # "dry_run" is the setting (its word is an escalation); "dry-run" the rollback, not standing.
    with pytest.raises(OperatorRefused, match="the rollback dry-run does not stand"):
        decide(state, Lift("dry-run", BOB), new_id="x")
    assert [c.field for c in decide(state, Lift("dry_run", BOB), new_id="x").changes] == ["dry_run"]
    assert [c.field for c in decide(state, Lift("deny_mainnet", BOB), new_id="x").changes] == [
        "allow_mainnet_trade"
    ]
    everything = decide(state, Lift("ALL", BOB), new_id="x")
    assert sorted(c.field for c in everything.changes) == [
        "allow_mainnet_trade",
        "armed",
        "dry_run",
    ]


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(OperatorRefused, match="unknown setting 'armd'"):
        decide(OperatorState(), SetWord("armd", False, ALICE), new_id="x")


# --- a lost document --------------------------------------------------------------------------


def test_a_fresh_deployment_has_no_document_and_nothing_is_lost() -> None:
    reading = judge(None, None, instance="a", now_ms=T, new_id="n", where="redis")
    assert reading.state == OperatorState()
    assert reading.write is None
    # Words lifted to nothing: losing the document loses nothing either.
    empty = decide(given(SetWord("armed", False, ALICE)), Lift("all", BOB), new_id="x").state
    assert judge(empty, None, instance="a", now_ms=T, new_id="n", where="r").write is None


def test_a_document_gone_while_a_rollback_stood_is_written_back_marked_lost() -> None:
    knew = given(SetWord("armed", False, ALICE))
    reading = judge(knew, None, instance="grinder-a", now_ms=T + 5, new_id="doc2", where="redis")
    restored = reading.write
    assert restored is not None
    assert reading.expected is None  # created only while there is none
    assert restored.words == knew.words
    assert restored.id == "doc2"
    assert restored.ancestors == ("doc1",)
    assert restored.lost is not None
    assert restored.lost.noticed_by == "grinder-a"
    assert "redis was gone while this instance knew revision 1" in restored.lost.detail
    # An operator re-asserts it: a rollback, or a lift.
    assert decide(restored, SetWord("armed", False, BOB), new_id="x").state.lost is None
    assert decide(restored, SetWord("armed", False, BOB), new_id="x").reasserted
    with pytest.raises(OperatorRefused, match="operator state lost"):
        decide(restored, SetWord("max_orders_per_action", 1, BOB), new_id="x")
    again = decide(restored, Lift("all", BOB), new_id="x").state
    assert (again.lost, again.words) == (None, ())


def test_a_document_made_anew_is_marked_lost_once_and_then_recognised() -> None:
    knew = given(SetWord("armed", False, ALICE), SetWord("action", "none", ALICE))
    # After the loss an operator (unaware) gave one word: a new document without the others.
    anew = decide(OperatorState(), SetWord("dry_run", True, BOB), new_id="doc9").state
    reading = judge(knew, anew, instance="b", now_ms=T, new_id="n", where="redis")
    assert reading.expected == anew
    marked = reading.write
    assert marked is not None
    assert marked.lost is not None
    assert [w.field for w in marked.words] == ["action", "dry_run", "armed"]
    # Re-asserted, it descends from what the instance knew: no second alarm, from anyone.
    cleared = decide(marked, Lift("action-none", BOB), new_id="x").state
    for memory in (knew, marked):
        assert judge(memory, cleared, instance="b", now_ms=T, new_id="n", where="r").write is None


# --- the document's form, and its file ---------------------------------------------------------


def test_the_document_round_trips_through_json() -> None:
    state = given(SetWord("armed", False, ALICE), SetWord("symbol_whitelist", ["BTCUSDT"], BOB))
    text = json.dumps(state.to_json())
    assert OperatorState.from_json(json.loads(text), source="x") == state


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[]", "operator state must be a JSON object"),
        ('{"schema_version": 2}', "unsupported operator state schema_version 2"),
        ('{"schema_version": 1, "id": "", "revision": 1, "words": {}}', "id must be"),
        ('{"schema_version": 1, "id": "a", "revision": 0, "words": {}}', "revision must be"),
        ('{"schema_version": 1, "id": "a", "revision": 1, "words": {"armd": {}}}', "not a setting"),
        (
            '{"schema_version": 1, "id": "a", "revision": 1, "words": {"armed": '
            '{"value": "no", "by": "a@b", "at_ms": 1}}}',
            "value 'no' is not one this setting takes",
        ),
        (
            '{"schema_version": 1, "id": "a", "revision": 1, "words": {"armed": '
            '{"value": false, "by": "a b", "at_ms": 1}}}',
            "words.armed.by: expected who gave the command",
        ),
        ('{"schema_version": 1, "id": "a", "revision": NaN}', "not JSON"),
        ("not json", "corrupt operator state (not JSON"),
    ],
)
def test_a_corrupt_file_is_an_error_naming_the_file_and_the_field(
    tmp_path: Path, doc: str, message: str
) -> None:
    path = tmp_path / "operator_state.json"
    path.write_text(doc)
    with pytest.raises(OperatorStateError) as info:
        FileOperatorStore(path).read()
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_path_that_is_no_regular_file_is_refused_unopened(tmp_path: Path) -> None:
    fifo = tmp_path / "operator_state.json"
    os.mkfifo(fifo)
    with pytest.raises(OperatorStateError, match="not a regular file"):
        FileOperatorStore(fifo).read()  # would wait forever if it were opened


def test_the_file_is_compare_and_set_and_a_stat_tells_a_change(tmp_path: Path) -> None:
    path = tmp_path / "state" / "operator_state.json"
    one, two = FileOperatorStore(path), FileOperatorStore(path)  # two processes sharing it
    assert one.read() is None
    first = given(SetWord("armed", False, ALICE))
    assert one.replace("", first)
    assert one.read_if_changed(first.version) is UNCHANGED
    second = decide(first, SetWord("action", "none", BOB), new_id="x").state
    assert two.replace(first.version, second)
    assert not one.replace(first.version, second)  # the other one changed it meanwhile
    assert one.read_if_changed(first.version) == second
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


# --- who, why --------------------------------------------------------------------------------


@pytest.mark.parametrize("by", ["", "alice host", "a\nb", "x" * 129, None, 7])
def test_who_must_be_one_word(by: object) -> None:
    with pytest.raises(ConfigError, match="by: expected who gave the command"):
        check_by(by)


@pytest.mark.parametrize("reason", ["two\nlines", "x" * 201, "\x1b[31mred", 5])
def test_a_reason_is_one_short_line(reason: object) -> None:
    with pytest.raises(ConfigError, match="--reason: expected one line of at most 200"):
        check_reason(reason)
    assert check_reason("  ") is None
    assert check_reason(" incident 42 ") == "incident 42"


# --- gate 5's configured value, and the controls over memory --------------------------------


def test_gate_5_is_the_environment_at_start_and_says_so() -> None:
    conf = configured(
        ReconcileConfig(), None, RuntimeEnv.from_env({"ALLOW_MAINNET_TRADE": "1"}), None
    )
    settings = settings_of(conf.reconcile, conf.armed, conf.allow_mainnet, conf.origins)
    assert settings["allow_mainnet_trade"] == Sourced(
        True, Source.ENV, "ALLOW_MAINNET_TRADE (environment at start)"
    )
    none = configured(ReconcileConfig(), None, RuntimeEnv.from_env({}), None)
    assert settings_of(none.reconcile, none.armed, none.allow_mainnet, none.origins)[
        "allow_mainnet_trade"
    ] == Sourced(False, Source.DEFAULT)


def test_a_word_given_twice_at_once_is_recorded_once_each_in_order() -> None:
    """Two commands racing over one store: compare-and-set keeps both, one after the other."""
    store = MemoryOperatorStore()
    one = make_controls(ReconcileConfig(), store=store).operator
    two = make_controls(ReconcileConfig(), store=store).operator

    async def both() -> None:
        await asyncio.gather(
            one.command(SetWord("armed", False, STAMP)),
            two.command(SetWord("action", "none", STAMP)),
        )

    asyncio.run(both())
    final = store.read()
    assert final is not None
    assert final.revision == 2
    assert sorted(w.field for w in final.words) == ["action", "armed"]
    assert isinstance(final.word("armed"), Word)


def test_a_local_copy_remembers_a_document_and_nothing_before_one_exists(tmp_path: Path) -> None:
    """With HA, the local copy is read at start: a deployment with no document yet leaves
    none (a restart then starts as cleanly), and one with a document keeps it."""
    shared = MemoryOperatorStore()  # the deployment's store (Redis in production)
    mirror = tmp_path / "operator_state.json"

    def instance() -> OperatorControl:
        control = OperatorControl(
            shared,
            instance="a",
            clock=lambda: T,
            apply=lambda _in_force, _cause, _stamp: ([], None),
            check=lambda _in_force: None,
            mirror=FileOperatorStore(mirror),
        )
        control.start(configured_settings())
        return control

    instance()
    assert not mirror.exists()
    instance().record(SetWord("armed", False, ALICE))
    again = instance()  # restarted: starts from the copy and the store alike
    assert again.problem is None
    assert FileOperatorStore(mirror).read() == shared.read()
    shared.clear()  # the store lost it; a restarted instance still knows
    restarted = instance()
    assert restarted.problem is not None
    assert restarted.problem.startswith("operator state lost (")
