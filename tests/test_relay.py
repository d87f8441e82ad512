"""core.methods.relay: what a method has in flight reaches the cache wherever Ctrl-C lands."""

import pytest

from promptclf.core.methods import relay


def in_flight_method(answers: list, in_flight: list, log: list):
    """Yields `answers`; when an exception is thrown in, yields `in_flight` (requests already paid for), then
    re-raises it, as ChatLabeler._in_parallel does."""
    try:
        yield from answers
    except BaseException:
        log.append("thrown in")
        yield from in_flight
        raise


def test_an_exception_thrown_into_the_relay_reaches_the_method_and_its_answers_in_flight_are_kept():
    kept, log = [], []
    outcomes = relay(in_flight_method([1, 2], [3, 4], log), kept.append)
    assert next(outcomes) == 1
    rest = []
    with pytest.raises(KeyboardInterrupt):
        rest.append(outcomes.throw(KeyboardInterrupt()))
        rest.extend(outcomes)
    assert log == ["thrown in"] and kept == [1, 3, 4] and rest == [3, 4]


def test_ctrl_c_landing_while_an_answer_is_being_kept_still_keeps_it_and_what_is_in_flight():
    kept, log = [], []
    interrupted = []

    def keep(item):
        if item == 2 and not interrupted:  # Ctrl-C lands in the relay's own frame, not at a yield
            interrupted.append(item)
            raise KeyboardInterrupt
        kept.append(item)

    outcomes = relay(in_flight_method([1, 2, 5], [3, 4], log), keep)
    with pytest.raises(KeyboardInterrupt):
        list(outcomes)
    assert log == ["thrown in"] and kept == [1, 2, 3, 4]


def test_an_error_of_the_keeping_itself_is_not_swallowed():
    def keep(item):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        list(relay(iter([1, 2]), keep))
