"""Every public name is exported, documented, and nothing private leaks."""

import lwp


def test_all_names_exist_and_are_documented():
    from_stdlib = {"BrokenBarrierError", "Empty", "Full"}  # the stdlib's own classes, re-exported
    for name in set(lwp.__all__) - from_stdlib:
        obj = getattr(lwp, name)
        assert obj.__doc__, f"lwp.{name} has no docstring"
    assert len(set(lwp.__all__)) == len(lwp.__all__)


def test_no_private_names_in_all():
    assert not [n for n in lwp.__all__ if n.startswith("_")]


def test_public_modules_define_all():
    import importlib

    for name in ("lwp.sync", "lwp.queue", "lwp.local", "lwp.channel"):
        mod = importlib.import_module(name)  # lwp.local the attribute is the class
        for name in set(mod.__all__) - {"select"}:
            assert getattr(lwp, name) is getattr(mod, name), name


def test_select_module_is_not_shadowed():
    """lwp.select is the cooperative select module; the channel select is lwp.channel.select."""
    import importlib

    module = importlib.import_module("lwp.select")
    assert module.select is not lwp.channel.select
    assert lwp.select is module and not callable(module)
