"""lwp.local: attributes per green thread and per OS thread, like threading.local."""

import gc
import threading
import weakref

import pytest
from helpers import wait_until

import lwp


class Box:
    """A weak-referenceable value, to see when a thread's values are dropped."""


def test_each_green_thread_sees_its_own_values():
    def main():
        loc = lwp.local()
        loc.x = "main"
        seen = []

        def worker(i):
            assert not hasattr(loc, "x")
            loc.x = i
            lwp.sleep(0)  # the others run and set theirs meanwhile
            seen.append((i, loc.x))

        ts = [lwp.spawn(worker, i) for i in range(20)]
        for t in ts:
            t.join(5)
        assert loc.x == "main"
        return sorted(seen)

    assert lwp.run(main, lwps=1) == [(i, i) for i in range(20)]


def test_across_lwps_and_bound_threads():
    def main():
        loc = lwp.local()
        loc.x = 0
        ev = lwp.Event()

        def worker(i):
            loc.x = i
            ev.wait(10)
            return loc.x, lwp.current()._lwp

        ts = [lwp.spawn(worker, i, bound=(i % 2 == 0)) for i in range(6)]
        wait_until(lambda: all(t._state == "parked" for t in ts))
        ev.set()
        results = [t.join(5) for t in ts]
        assert len({id(where) for _, where in results}) > 1  # really on several LWPs
        return [x for x, _ in results], loc.x

    assert lwp.run(main, lwps=2) == ([0, 1, 2, 3, 4, 5], 0)


def test_plain_os_threads_have_their_own_values():
    loc = lwp.local()
    loc.x = "main"
    seen = []

    def worker(i):
        seen.append(getattr(loc, "x", None))
        loc.x = i
        seen.append(loc.x)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
        t.join(10)
    assert seen == [None, 0, None, 1, None, 2]
    assert loc.x == "main"


def test_green_thread_and_os_thread_do_not_share():
    def main():
        loc = lwp.local()
        loc.x = "green"
        out = []
        t = threading.Thread(target=lambda: out.append(getattr(loc, "x", "unset")))
        t.start()
        wait_until(lambda: not t.is_alive())
        return loc.x, out

    assert lwp.run(main) == ("green", ["unset"])


def test_attribute_errors_delattr_and_dict():
    loc = lwp.local()
    with pytest.raises(AttributeError):
        loc.missing
    with pytest.raises(AttributeError):
        del loc.missing
    loc.a = 1
    loc.b = 2
    assert loc.__dict__ == {"a": 1, "b": 2}
    assert vars(loc) == {"a": 1, "b": 2}
    del loc.a
    assert not hasattr(loc, "a") and loc.__dict__ == {"b": 2}
    loc.__dict__["c"] = 3  # the dict is the live per-thread namespace
    assert loc.c == 3
    with pytest.raises(AttributeError):
        loc.__dict__ = {}
    assert loc.__class__ is lwp.local


def test_dict_is_per_thread():
    def main():
        loc = lwp.local()
        loc.a = 1
        other = lwp.spawn(lambda: (dict(loc.__dict__), loc.__dict__ is not None)).join(5)
        return other, loc.__dict__

    assert lwp.run(main) == (({}, True), {"a": 1})


def test_arguments_need_an_init():
    with pytest.raises(TypeError):
        lwp.local(1)
    with pytest.raises(TypeError):
        lwp.local(x=1)
    with pytest.raises(TypeError):
        threading.local(1)  # the same rule


class Counted(lwp.local):
    calls = []  # class attribute: shared, not per thread

    def __init__(self, value, *, tag="t"):
        Counted.calls.append((value, tag))
        self.value = value
        self.tag = tag

    def double(self):
        return self.value * 2

    @property
    def shout(self):
        return self.tag.upper()


def test_subclass_init_runs_once_per_thread_with_the_arguments():
    Counted.calls = []

    def main():
        loc = Counted(21, tag="x")
        assert Counted.calls == [(21, "x")]  # once in the creating thread
        assert loc.value == 21 and loc.double() == 42 and loc.shout == "X"

        def worker():
            loc.value += 1  # __init__ ran first, here, with the same arguments
            return loc.value, loc.double()

        results = [lwp.spawn(worker).join(5) for _ in range(3)]
        assert loc.value == 21
        return results, Counted.calls

    results, calls = lwp.run(main)
    assert results == [(22, 44)] * 3
    assert calls == [(21, "x")] * 4


def test_subclass_init_once_like_threading_local():
    calls = {"lwp": 0, "threading": 0}

    class L(lwp.local):
        def __init__(self):
            calls["lwp"] += 1
            self.x = 1

    class T(threading.local):
        def __init__(self):
            calls["threading"] += 1
            self.x = 1

    L(), T()
    assert calls == {"lwp": 1, "threading": 1}


def test_subclass_class_attributes_and_methods():
    class Defaults(lwp.local):
        colour = "red"

        def hello(self):
            return f"hello {self.colour}"

    def main():
        loc = Defaults()
        loc.colour = "blue"
        other = lwp.spawn(lambda: (loc.colour, loc.hello())).join(5)
        return (loc.colour, loc.hello()), other

    assert lwp.run(main) == (("blue", "hello blue"), ("red", "hello red"))


@pytest.mark.parametrize("refers_to_its_thread", [False, True])
def test_values_dropped_when_the_green_thread_finishes(refers_to_its_thread):
    """Also a value that refers back to its thread (which a store keyed weakly by
    the thread would keep alive for good)."""
    def main():
        loc = lwp.local()
        refs = []

        def worker():
            box = Box()
            if refers_to_its_thread:
                box.thread = lwp.current()
            refs.append(weakref.ref(box))
            loc.box = box

        t = lwp.spawn(worker)
        t.join(5)
        del t
        lwp.sleep(0.01)  # through the hub, whose frame may still refer to the last thread it ran
        gc.collect()
        return refs[0]() is None

    assert lwp.run(main)


def test_values_dropped_when_an_os_thread_ends():
    loc = lwp.local()
    refs = []

    def worker():
        box = Box()
        refs.append(weakref.ref(box))
        loc.box = box

    t = threading.Thread(target=worker)
    t.start()
    t.join(10)
    gc.collect()
    assert refs[0]() is None


def test_the_local_itself_is_collectable():
    def main():
        loc = lwp.local()
        loc.x = Box()
        box_ref = weakref.ref(loc.x)
        ref = weakref.ref(loc)
        del loc
        gc.collect()
        return ref() is None and box_ref() is None

    assert lwp.run(main)


def test_many_threads_many_locals():
    def main():
        locs = [lwp.local() for _ in range(5)]

        def worker(i):
            for k, loc in enumerate(locs):
                loc.v = (i, k)
            lwp.sleep(0)
            return [loc.v for loc in locs]

        ts = [lwp.spawn(worker, i) for i in range(200)]
        return all(t.join(5) == [(i, k) for k in range(5)] for i, t in enumerate(ts))

    assert lwp.run(main, lwps=2, seed=9)


def test_values_kept_while_the_thread_runs():
    def main():
        loc = lwp.local()
        ev = lwp.Event()
        refs = []

        def worker():
            loc.box = Box()
            refs.append(weakref.ref(loc.box))
            ev.wait(10)
            return loc.box is refs[0]()

        t = lwp.spawn(worker)
        wait_until(lambda: refs)
        gc.collect()
        alive = refs[0]() is not None
        ev.set()
        return alive, t.join(5)

    assert lwp.run(main) == (True, True)


def test_first_thread_of_a_worker_greenlet_is_freed():
    """The first thread a worker greenlet ran was kept alive by its start arguments."""
    def main():
        freed = []
        for _ in range(3):
            t = lwp.spawn(Box)
            ref = weakref.ref(t.join(5))
            del t
            lwp.sleep(0.01)
            gc.collect()
            freed.append(ref() is None)
        return freed

    assert lwp.run(main, lwps=1) == [True, True, True]
