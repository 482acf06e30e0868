"""Buckets: the namespaces of PaxosKV, each with what follows the end of a binding.

A bucket is a name plus two functions: ``release_policy(register, ended) ->
register`` (what a release round leaves when a binding ends; default: empty
it) and ``on_release(bucket, key, chosen)`` (run on the node that drove a
release round, once it is chosen). A release may be driven by any node, so
the policy must be the same everywhere: a module-level function, checked
here. Keys of different buckets never collide.

`start_bucket` registers a bucket on the current node; `Bucket(...)` is the
child spec form, for a supervisor's children (its process registers the
bucket when it starts). The bucket ``"default"`` always exists.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import structlog

from paxtor.actors import GenServer, call
from paxtor.actors.child_spec import ChildSpec
from paxtor.actors.function_ref import FunctionRefError, function_ref
from paxtor.actors.messages import CallError
from paxtor.paxos.envelopes import BINDINGS_NAME
from paxtor.paxos.register import Register, ReleasePolicy, empty_released

__all__ = ["Bucket", "BucketSpec", "OnRelease", "DEFAULT_BUCKET", "start_bucket", "check_bucket_name"]

log = structlog.get_logger(__name__)

DEFAULT_BUCKET = "default"

OnRelease = Callable[[str, Hashable, Register], None]


#: Bucket names travel in every message of a round: short names only.
MAX_BUCKET_NAME = 255


def check_bucket_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise TypeError(f"a bucket name is a non-empty str, got {name!r}")
    if len(name) > MAX_BUCKET_NAME:
        raise ValueError(f"a bucket name is at most {MAX_BUCKET_NAME} characters, got {len(name)}")
    return name


@dataclass(frozen=True)
class BucketSpec:
    """A bucket's name, release policy and release hook."""

    name: str
    release_policy: ReleasePolicy = empty_released
    on_release: OnRelease | None = None

    @classmethod
    def make(
        cls, name: str, release_policy: ReleasePolicy | None = None, on_release: OnRelease | None = None
    ) -> BucketSpec:
        """Check the arguments; clear errors before anything is registered."""
        check_bucket_name(name)
        policy = empty_released if release_policy is None else release_policy
        if not callable(policy):
            raise TypeError(f"release_policy must be callable, got {policy!r}")
        try:
            function_ref(policy)
        except FunctionRefError as exc:
            raise ValueError(
                f"release_policy must be a module-level function (every node applies it): {exc}"
            ) from None
        if on_release is not None and not callable(on_release):
            raise TypeError(f"on_release must be callable, got {on_release!r}")
        return cls(name, policy, on_release)


def start_bucket(
    name: str, release_policy: ReleasePolicy | None = None, on_release: OnRelease | None = None
) -> None:
    """Register bucket ``name`` on the current node (idempotent for the same functions).

    Raises ValueError if the bucket is already registered with other
    functions, RuntimeError if PaxosKV is not running on this node.
    """
    spec = BucketSpec.make(name, release_policy, on_release)
    try:
        result = call(BINDINGS_NAME, ("start_bucket", spec))
    except CallError as exc:
        raise RuntimeError(f"PaxosKV is not running on this node ({exc.reason!r})") from None
    if result is not None:
        raise result


class BucketServer(GenServer):
    """The process behind a `Bucket` child spec: registers the bucket, then idles."""

    def init(self, spec: BucketSpec) -> None:
        self.spec = spec
        start_bucket(spec.name, spec.release_policy, spec.on_release)

    def handle_call(self, request: Any, caller: Any) -> Any:
        if request == "spec":
            return self.spec
        return super().handle_call(request, caller)


def Bucket(  # noqa: N802 - a child spec "constructor", named like the concept (the README's API)
    name: str, release_policy: ReleasePolicy | None = None, on_release: OnRelease | None = None
) -> ChildSpec:
    """The child spec of bucket ``name``: put it in a supervisor's children."""
    spec = BucketSpec.make(name, release_policy, on_release)
    return ChildSpec(id=("paxos_bucket", name), start=(BucketServer.start_link, (spec,)))
