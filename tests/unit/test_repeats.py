"""reconcile/repeats.py: an incident's outcome is reported once, and again when it changes."""

from __future__ import annotations

from grinder.reconcile.actions import ActionResult
from grinder.reconcile.labels import AttemptOutcome, BlockReason, FailReason, Mode, ResultStatus
from grinder.reconcile.repeats import Outcome, RepeatFilter, result_outcome, skip_outcome
from grinder.reconcile.routing import ActionKind
from grinder.reconcile.types import Mismatch, MismatchType

ORPHAN = Mismatch(MismatchType.ORDER_EXISTS_UNEXPECTED, "BTCUSDT", "grinder_d_BTCUSDT_1_1_1")
KEY = ORPHAN.key
OTHER = ("ORDER_EXISTS_UNEXPECTED", "ETHUSDT", "grinder_d_ETHUSDT_1_1_1")
BR = BlockReason


def blocked(*gates: BlockReason, mode: Mode = Mode.LIVE) -> Outcome:
    return Outcome(ResultStatus.BLOCKED, mode, tuple(gates))


def result(
    status: ResultStatus,
    *,
    reason: str | None = None,
    error_type: str | None = None,
    error: str | None = None,
    attempts: tuple[AttemptOutcome, ...] = (),
    blocked_by: tuple[BlockReason, ...] = (),
) -> ActionResult:
    return ActionResult(
        run_id="r",
        kind=ActionKind.CANCEL,
        mismatch=ORPHAN,
        status=status,
        mode=Mode.LIVE,
        reason=reason,
        error=error,
        attempts=attempts,
        blocked_by=blocked_by,
        error_type=error_type,
    )


def test_an_outcome_is_reported_once_then_counted_until_it_changes() -> None:
    f = RepeatFilter()
    both = blocked(BR.COOLDOWN_NOT_ELAPSED, BR.SYMBOL_NOT_IN_WHITELIST)
    assert f.report(KEY, both) == 0
    assert [f.report(KEY, both) for _ in range(5)] == [None] * 5
    # The failing set changes: reported, with the runs the previous one repeated in.
    assert f.report(KEY, blocked(BR.COOLDOWN_NOT_ELAPSED)) == 5
    assert f.report(KEY, blocked(BR.COOLDOWN_NOT_ELAPSED)) is None
    # Back to the first set: a change again.
    assert f.report(KEY, both) == 1


def test_the_order_of_the_gates_the_mode_and_the_status_each_make_a_change() -> None:
    f = RepeatFilter()
    assert f.report(KEY, blocked(BR.NOT_LEADER)) == 0
    assert f.report(KEY, blocked(BR.NOT_LEADER, mode=Mode.DRY_RUN)) == 0
    assert f.report(KEY, Outcome(ResultStatus.FAILED, Mode.DRY_RUN, ("port_error",))) == 0
    assert f.report(KEY, Outcome(ResultStatus.FAILED, Mode.DRY_RUN, ("port_error", "X"))) == 0
    assert f.report(KEY, skip_outcome(Mode.DRY_RUN, "already_planned")) == 0


def test_incidents_are_apart_and_a_cleared_one_that_comes_back_is_new() -> None:
    f = RepeatFilter()
    one = blocked(BR.ACTION_IS_NONE)
    assert f.report(KEY, one) == 0
    assert f.report(OTHER, one) == 0
    assert f.report(KEY, one) is None
    f.forget([KEY])
    assert not f.known(KEY)
    assert f.report(KEY, one) == 0
    assert f.report(OTHER, one) is None
    f.keep_only([KEY])
    assert f.known(KEY)
    assert not f.known(OTHER)
    assert f.report(OTHER, one) == 0


def test_what_reached_the_exchange_is_reported_every_time() -> None:
    f = RepeatFilter()
    sent = result(
        ResultStatus.FAILED,
        reason=FailReason.PORT_ERROR,
        error_type="UnknownOutcome",
        attempts=(AttemptOutcome.UNKNOWN,),
    )
    outcome = result_outcome(sent)
    assert outcome.always
    assert [f.report(KEY, outcome) for _ in range(3)] == [0, 0, 0]
    # The same failure not sent (refused before it left) repeats the last one reported.
    unsent = result_outcome(
        result(
            ResultStatus.FAILED,
            reason=FailReason.PORT_ERROR,
            error_type="UnknownOutcome",
            attempts=(AttemptOutcome.WITHHELD,),
        )
    )
    assert not unsent.always
    assert f.report(KEY, unsent) is None
    for status in (ResultStatus.PLANNED, ResultStatus.EXECUTED):
        planned = result_outcome(result(status))
        assert None not in [f.report(KEY, planned) for _ in range(2)]


def test_a_result_names_its_causes() -> None:
    chain = result(
        ResultStatus.BLOCKED,
        reason=BR.COOLDOWN_NOT_ELAPSED,
        blocked_by=(BR.COOLDOWN_NOT_ELAPSED, BR.SYMBOL_NOT_IN_WHITELIST),
    )
    assert result_outcome(chain).causes == ("cooldown_not_elapsed", "symbol_not_in_whitelist")
    assert chain.blocking == ("cooldown_not_elapsed", "symbol_not_in_whitelist")
    at_the_wire = result(ResultStatus.BLOCKED, reason=BR.DRY_RUN)
    assert at_the_wire.blocking == ("dry_run",)
    failed = result(ResultStatus.FAILED, reason=FailReason.PORT_ERROR, error_type="IpBanned")
    assert result_outcome(failed).causes == ("port_error", "IpBanned")
    assert failed.blocking == ()
    # The error's text (times, figures) is not a cause: only its type is.
    later = result(
        ResultStatus.FAILED, reason=FailReason.PORT_ERROR, error_type="IpBanned", error="3599 s"
    )
    assert result_outcome(later) == result_outcome(failed)
