"""Upcalls: subscribe, unsubscribe, event filtering, failing subscribers."""

import sys

import pytest

import lwp


def test_subscribe_sees_lwp_lifecycle_and_blocked_threads():
    events = []
    unsubscribe = lwp.upcalls.subscribe(lambda e, **info: events.append((e, info)))
    try:
        lwp.run(lambda: lwp.blocking(lambda: None), lwps=1)
    finally:
        unsubscribe()
    names = [e for e, _ in events]
    assert names.count("lwp_added") == 1 and names.count("lwp_retired") == 1
    assert names.index("thread_blocked") < names.index("thread_unblocked")
    blocked = dict(events)["thread_blocked"]
    assert blocked["thread"].name == "main" and "lambda" in blocked["call"]


def test_unsubscribe_and_event_filter():
    seen = []
    unsubscribe = lwp.upcalls.subscribe(lambda e, **info: seen.append(e), events="lwp_added")
    lwp.run(lambda: None, lwps=2)
    unsubscribe()
    lwp.run(lambda: None, lwps=2)
    assert seen == ["lwp_added", "lwp_added"]


def test_bad_subscriptions_raise():
    with pytest.raises(ValueError):
        lwp.upcalls.subscribe(print, events=("no_such_event",))
    with pytest.raises(TypeError):
        lwp.upcalls.subscribe(42)


def test_failing_subscriber_is_reported_not_fatal(monkeypatch):
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)

    def broken(event, **info):
        raise RuntimeError("subscriber bug")

    unsubscribe = lwp.upcalls.subscribe(broken, events="lwp_added")
    try:
        assert lwp.run(lambda: 7, lwps=1) == 7
    finally:
        unsubscribe()
    assert [type(r.exc_value) for r in reported] == [RuntimeError]
    assert "subscriber" in reported[0].err_msg
