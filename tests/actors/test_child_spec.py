"""ChildSpec: the normal form, its shorthands, and the errors bad specs get."""

from __future__ import annotations

import pytest

from paxtor.actors.child_spec import ChildSpec, ChildStartError, is_normal_exit
from paxtor.actors.ids import Pid

PID = Pid("nonode", 1, 7)


def start_fn(*args):
    return PID


class PlainWorker:
    """A class with only start_link: the bare-class and (Class, arg) forms."""

    @classmethod
    def start_link(cls, *args):
        return PID


class SpecWorker:
    """A class with its own child_spec, as GenServer and Supervisor have."""

    @classmethod
    def child_spec(cls, *args):
        return ChildSpec(id=("spec", args), start=(cls.start_link, args), restart="transient")

    @classmethod
    def start_link(cls, *args):
        return PID


class DictSpecWorker:
    @classmethod
    def child_spec(cls, arg):
        return {"id": "dict", "start": (start_fn, (arg,)), "type": "supervisor"}


def test_defaults_follow_elixir():
    spec = ChildSpec("w", start=(start_fn, ()))
    assert (spec.restart, spec.shutdown, spec.type) == ("permanent", 5.0, "worker")
    sup = ChildSpec("s", start=(start_fn, ()), type="supervisor")
    assert sup.shutdown == "infinity"


def test_spec_is_frozen_and_hashable():
    spec = ChildSpec("w", start=(start_fn, (1,)))
    with pytest.raises(AttributeError):
        spec.restart = "temporary"  # type: ignore[misc]
    assert spec == ChildSpec("w", start=(start_fn, (1,)))
    assert hash(spec) == hash(ChildSpec("w", start=(start_fn, (1,))))


@pytest.mark.parametrize(
    "form, expected_id, expected_start, expected_restart",
    [
        (PlainWorker, PlainWorker, (PlainWorker.start_link, ()), "permanent"),
        ((PlainWorker, 3), PlainWorker, (PlainWorker.start_link, (3,)), "permanent"),
        ((PlainWorker, (1, 2)), PlainWorker, (PlainWorker.start_link, ((1, 2),)), "permanent"),
        (SpecWorker, ("spec", ()), (SpecWorker.start_link, ()), "transient"),
        ((SpecWorker, "a"), ("spec", ("a",)), (SpecWorker.start_link, ("a",)), "transient"),
        ({"id": "d", "start": (start_fn, (1,))}, "d", (start_fn, (1,)), "permanent"),
        (
            {"id": "d", "start": (start_fn, ()), "restart": "temporary", "shutdown": 0.5},
            "d",
            (start_fn, ()),
            "temporary",
        ),
    ],
)
def test_of_normalises_every_accepted_form(form, expected_id, expected_start, expected_restart):
    spec = ChildSpec.of(form)
    assert spec.id == expected_id
    assert spec.start == expected_start
    assert spec.restart == expected_restart


def test_of_returns_a_childspec_unchanged():
    spec = ChildSpec("x", start=(start_fn, ()))
    assert ChildSpec.of(spec) is spec


def test_class_child_spec_may_return_a_dict():
    spec = ChildSpec.of((DictSpecWorker, 9))
    assert spec == ChildSpec("dict", start=(start_fn, (9,)), type="supervisor")
    assert spec.shutdown == "infinity"


def test_overrides_apply_after_normalising():
    spec = ChildSpec.of((PlainWorker, 1), id="w1", restart="temporary", shutdown="brutal_kill")
    assert (spec.id, spec.restart, spec.shutdown) == ("w1", "temporary", "brutal_kill")
    assert spec.start == (PlainWorker.start_link, (1,))


@pytest.mark.parametrize("shutdown", [0.05, 1, 30.0, "brutal_kill", "infinity"])
def test_valid_shutdowns(shutdown):
    assert ChildSpec("w", start=(start_fn, ()), shutdown=shutdown).shutdown == shutdown


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"restart": "always"}, ValueError, "restart must be one of"),
        ({"type": "thread"}, ValueError, "type must be one of"),
        ({"shutdown": 0}, ValueError, "shutdown must be"),
        ({"shutdown": -1.0}, ValueError, "shutdown must be"),
        ({"shutdown": True}, ValueError, "shutdown must be"),
        ({"shutdown": float("inf")}, ValueError, "shutdown must be"),
        ({"shutdown": float("nan")}, ValueError, "shutdown must be"),
        ({"shutdown": "never"}, ValueError, "shutdown must be"),
        ({"start": start_fn}, TypeError, "(callable, args_tuple) pair"),
        ({"start": (start_fn,)}, TypeError, "(callable, args_tuple) pair"),
        ({"start": ("not callable", ())}, TypeError, "is not callable"),
        ({"start": (start_fn, [1])}, TypeError, "arguments must be a tuple"),
        ({"start": (start_fn, 1)}, TypeError, "arguments must be a tuple"),
        ({"id": ["unhashable"]}, TypeError, "hashable"),
    ],
)
def test_bad_fields_raise_naming_the_problem(kwargs, error, words):
    fields = {"id": "w", "start": (start_fn, ()), **kwargs}
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        ChildSpec(**fields)


@pytest.mark.parametrize(
    "form, error, words",
    [
        ({"start": (start_fn, ())}, ValueError, "missing the required key 'id'"),
        ({"id": "x"}, ValueError, "missing the required key 'start'"),
        ({"id": "x", "start": (start_fn, ()), "modules": []}, ValueError, "unknown child spec keys"),
        ({"id": "x", "start": (start_fn, ()), "restart": "sometimes"}, ValueError, "restart"),
        ((start_fn, ()), TypeError, "must be \\(Class, arg\\)"),
        ((PlainWorker, 1, 2), TypeError, "must be \\(Class, arg\\)"),
        (object, TypeError, "neither a child_spec"),
        ("worker", TypeError, "not a child spec"),
        (42, TypeError, "not a child spec"),
    ],
)
def test_of_rejects_bad_forms(form, error, words):
    with pytest.raises(error, match=words):
        ChildSpec.of(form)


def test_of_rejects_unknown_override():
    with pytest.raises(ValueError, match="unknown child spec keys"):
        ChildSpec.of(PlainWorker, name="x")


def test_class_child_spec_returning_garbage_is_rejected():
    class Bad:
        @classmethod
        def child_spec(cls):
            return 12

    with pytest.raises(TypeError, match="Bad.child_spec\\(\\) returned 12"):
        ChildSpec.of(Bad)


@pytest.mark.parametrize(
    "restart, reason, restarts",
    [
        ("permanent", "normal", True),
        ("permanent", "shutdown", True),
        ("permanent", ValueError("x"), True),
        ("transient", "normal", False),
        ("transient", "shutdown", False),
        ("transient", ("shutdown", "going away"), False),
        ("transient", "killed", True),
        ("transient", ("shutdown",), True),
        ("transient", ("other", "x"), True),
        ("transient", RuntimeError("crash"), True),
        ("temporary", "normal", False),
        ("temporary", RuntimeError("crash"), False),
    ],
)
def test_restarts_after(restart, reason, restarts):
    spec = ChildSpec("w", start=(start_fn, ()), restart=restart)
    assert spec.restarts_after(reason) is restarts


@pytest.mark.parametrize(
    "reason, normal",
    [("normal", True), ("shutdown", True), (("shutdown", 1), True), ("kill", False), (("x", 1), False)],
)
def test_is_normal_exit(reason, normal):
    assert is_normal_exit(reason) is normal


def test_start_process_returns_the_pid_or_none():
    assert ChildSpec("w", start=(start_fn, (1, 2))).start_process() == PID
    assert ChildSpec("w", start=(lambda: None, ())).start_process() is None


def test_start_process_wraps_failures():
    def boom():
        raise RuntimeError("no database")

    with pytest.raises(ChildStartError, match="child 'w' failed to start") as info:
        ChildSpec("w", start=(boom, ())).start_process()
    assert isinstance(info.value.reason, RuntimeError)
    assert info.value.child_id == "w"

    with pytest.raises(ChildStartError, match="expected a Pid or None"):
        ChildSpec("w", start=(lambda: "ok", ())).start_process()
