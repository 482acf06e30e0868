"""The name server's policy, driven by hand: misses share a resolver, a lookup that may start
the singleton replaces one that may not, one keeper per key, every waiting caller gets the
outcome, and the cache keeps only pids not known dead."""

from __future__ import annotations

from typing import Any

from paxtor.actors.ids import Pid
from paxtor.singletons.name_engine import (
    DEAD_MEMORY,
    NameCache,
    NameServerEngine,
    Reply,
    SpawnResolver,
    StartKeeper,
    Watch,
)

KEY, OTHER = b"k", b"other"
SERVER = Pid("n1", 1, 1)
R1, R2 = Pid("n1", 1, 10), Pid("n1", 1, 11)  # resolvers
K1, K2 = Pid("n1", 1, 20), Pid("n1", 1, 21)  # keepers
CHILD, REMOTE = Pid("n1", 1, 30), Pid("n2", 1, 40)
NAME = "a SingletonName"  # the engine only tells a name from None


def engine(dead: dict[Pid, Any] | None = None) -> NameServerEngine:
    """An engine whose known deaths are its cache's memory plus ``dead`` (a node's view)."""
    cache = NameCache(SERVER)
    extra = dead if dead is not None else {}
    return NameServerEngine(cache, lambda pid: extra.get(pid, cache.dead.get(pid)))


def of(effects: list[Any], kind: type) -> list[Any]:
    return [e for e in effects if type(e) is kind]


def replies(effects: list[Any]) -> dict[Any, tuple]:
    return {e.token: e.outcome for e in of(effects, Reply)}


def test_concurrent_misses_share_one_resolver_and_its_answer_is_cached():
    names = engine()
    assert names.resolve("a", KEY, NAME) == [SpawnResolver(KEY, NAME)]
    names.resolver_spawned(KEY, R1)
    assert names.resolve("b", KEY, NAME) == []  # waits on the same resolver
    assert names.resolve("c", KEY, None) == []  # a bare lookup too
    assert names.resolve("d", OTHER, None) == [SpawnResolver(OTHER, None)]  # another key: its own
    names.resolver_spawned(OTHER, R2)
    done = names.resolved(KEY, R1, ("ok", REMOTE))
    assert of(done, Watch) == [Watch(REMOTE)]
    assert replies(done) == {"a": ("ok", REMOTE), "b": ("ok", REMOTE), "c": ("ok", REMOTE)}
    assert names.cache.pids == {KEY: REMOTE}
    assert names.resolve("e", KEY, NAME) == [Reply("e", ("ok", REMOTE))]  # a hit: no resolver
    assert replies(names.resolved(OTHER, R2, ("ok", None))) == {"d": ("ok", None)}
    assert OTHER not in names.cache.pids  # nothing runs under it: nothing cached


def test_a_lookup_that_may_start_replaces_one_that_may_not():
    names = engine()
    assert names.resolve("bare", KEY, None) == [SpawnResolver(KEY, None)]
    names.resolver_spawned(KEY, R1)
    assert names.resolve("named", KEY, NAME) == [SpawnResolver(KEY, NAME)]  # takes the callers over
    names.resolver_spawned(KEY, R2)
    assert names.resolve("bare2", KEY, None) == []  # the named resolver answers bare lookups too
    assert names.resolved(KEY, R1, ("ok", None)) == []  # the replaced resolver: ignored
    assert names.resolver_exit(R1, "crashed") == []  # even if it crashes
    done = names.resolved(KEY, R2, ("ok", CHILD))
    assert replies(done) == {"bare": ("ok", CHILD), "named": ("ok", CHILD), "bare2": ("ok", CHILD)}


def test_a_resolver_crash_answers_every_caller_with_an_error():
    names = engine()
    names.resolve("a", KEY, NAME)
    names.resolver_spawned(KEY, R1)
    names.resolve("b", KEY, None)
    assert names.resolver_exit(R2, "boom") == []  # not a resolver of ours
    errors = replies(names.resolver_exit(R1, "boom"))
    assert set(errors) == {"a", "b"}
    for outcome in errors.values():
        assert outcome[0] == "error" and isinstance(outcome[1], RuntimeError) and "boom" in str(outcome[1])
    assert names.resolve("c", KEY, None) == [SpawnResolver(KEY, None)]  # the key is free again


def test_a_resolver_that_exits_normally_after_its_answer_changes_nothing():
    names = engine()
    names.resolve("a", KEY, NAME)
    names.resolver_spawned(KEY, R1)
    names.resolved(KEY, R1, ("error", TimeoutError("slow")))
    names.resolve("b", KEY, NAME)
    names.resolver_spawned(KEY, R2)
    assert names.resolver_exit(R1, "normal") == []
    assert names.resolver_exit(R2, "normal") == []  # its answer comes first; a normal exit never fails callers
    assert replies(names.resolved(KEY, R2, ("ok", CHILD))) == {"b": ("ok", CHILD)}


def test_starts_are_deduplicated_per_key():
    names = engine()
    first = names.start("a", KEY, "mod:Cls", (1,), "user key")
    assert first == [StartKeeper(KEY, "mod:Cls", (1,), "user key")]
    names.keeper_started(KEY, K1)
    assert names.start("b", KEY, "mod:Cls", (1,), "user key") == []  # one keeper per key here
    assert names.start("c", OTHER, "mod:Cls", (), "other") == [StartKeeper(OTHER, "mod:Cls", (), "other")]


def test_a_keeper_report_answers_every_requester_and_caches_the_child_as_hosted():
    names = engine()
    names.start("a", KEY, "mod:Cls", (), "user key")
    names.keeper_started(KEY, K1)
    names.start("b", KEY, "mod:Cls", (), "user key")
    done = names.keeper_report(KEY, K1, ("ok", CHILD), now=123.5)
    assert replies(done) == {"a": ("ok", CHILD), "b": ("ok", CHILD)}
    assert of(done, Watch) == [Watch(CHILD)]
    assert names.cache.pids[KEY] == CHILD
    assert names.cache.hosted[KEY] == ("user key", CHILD) and names.cache.since[KEY] == 123.5
    assert names.keeper_down(K1, "normal") == []  # the keeper ends after its report: nobody waits
    assert names.start("c", KEY, "mod:Cls", (), "user key") != []  # a new start may begin


def test_a_failed_start_answers_its_error_and_caches_nothing():
    names = engine()
    names.start("a", KEY, "mod:Cls", (), "user key")
    names.keeper_started(KEY, K1)
    names.start("b", KEY, "mod:Cls", (), "user key")
    done = names.keeper_report(KEY, K1, ("error", "init failed"), now=1.0)
    assert replies(done) == {"a": ("error", "init failed"), "b": ("error", "init failed")}
    assert not of(done, Watch) and names.cache.pids == {} and names.cache.hosted == {}
    names.start("c", KEY, "mod:Cls", (), "user key")
    refused = ValueError("supervisor refused")
    assert names.keeper_failed(KEY, refused) == [Reply("c", ("error", refused))]
    assert names.start("d", KEY, "mod:Cls", (), "user key") != []  # the key is free here again


def test_a_keeper_that_dies_before_its_report_sends_its_requesters_to_look_again():
    names = engine()
    names.start("a", KEY, "mod:Cls", (), "user key")
    names.keeper_started(KEY, K1)
    names.start("b", KEY, "mod:Cls", (), "user key")
    done = replies(names.keeper_down(K1, "killed"))
    assert set(done) == {"a", "b"}
    assert all(outcome[0] == "retry" and "killed" in outcome[1] for outcome in done.values())
    assert names.start("c", KEY, "mod:Cls", (), "user key") != []  # a new keeper may start


def test_messages_of_an_old_resolver_or_keeper_are_ignored():
    names = engine()
    names.resolve("a", KEY, NAME)
    names.resolver_spawned(KEY, R2)
    assert names.resolved(KEY, R1, ("ok", CHILD)) == []  # not the key's resolver
    assert names.cache.pids == {}
    names.start("s", KEY, "mod:Cls", (), "user key")
    names.keeper_started(KEY, K2)
    assert names.keeper_report(KEY, K1, ("ok", CHILD), now=1.0) == []  # not the key's keeper
    assert names.keeper_down(K1, "killed") == []
    assert names.cache.hosted == {}
    assert replies(names.keeper_report(KEY, K2, ("ok", CHILD), now=1.0)) == {"s": ("ok", CHILD)}
    assert replies(names.resolved(KEY, R2, ("ok", CHILD))) == {"a": ("ok", CHILD)}


def test_the_down_of_a_keeper_that_reported_spares_the_next_keepers_requesters():
    names = engine()
    names.start("a", KEY, "mod:Cls", (), "user key")
    names.keeper_started(KEY, K1)
    names.keeper_report(KEY, K1, ("ok", CHILD), now=1.0)
    names.pid_down(CHILD, "crashed")  # K1 lives on as the parent of a child that ended
    names.start("b", KEY, "mod:Cls", (), "user key")
    names.keeper_started(KEY, K2)
    assert names.keeper_down(K1, "normal") == []  # K1 now exits: K2 still starts the key
    assert replies(names.keeper_report(KEY, K2, ("ok", REMOTE), now=2.0)) == {"b": ("ok", REMOTE)}


def test_a_down_evicts_the_pid_and_remembers_it_dead():
    names = engine()
    names.start("s", KEY, "mod:Cls", (), "user key")
    names.keeper_started(KEY, K1)
    names.keeper_report(KEY, K1, ("ok", CHILD), now=1.0)
    names.pid_down(CHILD, "crashed")
    assert KEY not in names.cache.pids and KEY not in names.cache.hosted and KEY not in names.cache.since
    assert names.cache.dead[CHILD] == "crashed"
    assert names.resolve("a", KEY, NAME) == [SpawnResolver(KEY, NAME)]  # a miss again
    names.resolver_spawned(KEY, R1)
    # the resolver found another pid: caching it watches it anew
    assert of(names.resolved(KEY, R1, ("ok", REMOTE)), Watch) == [Watch(REMOTE)]
    names.pid_down(CHILD, "again")  # no longer watched: nothing changes
    assert names.cache.pids[KEY] == REMOTE and names.cache.dead[CHILD] == "crashed"


def test_a_cached_pid_known_dead_is_not_answered():
    lost: dict[Pid, Any] = {}
    names = engine(lost)
    names.resolve("a", KEY, None)
    names.resolver_spawned(KEY, R1)
    names.resolved(KEY, R1, ("ok", REMOTE))
    assert names.resolve("b", KEY, None) == [Reply("b", ("ok", REMOTE))]
    lost[REMOTE] = "noconnection"  # its node is gone, before any Down came
    assert names.resolve("c", KEY, None) == [SpawnResolver(KEY, None)]


def test_a_pid_is_watched_once_and_an_overwritten_entry_survives_its_old_pids_down():
    names = engine()
    names.resolve("a", KEY, None)
    names.resolver_spawned(KEY, R1)
    assert of(names.resolved(KEY, R1, ("ok", REMOTE)), Watch) == [Watch(REMOTE)]
    names.resolve("b", OTHER, None)
    names.resolver_spawned(OTHER, R2)
    assert of(names.resolved(OTHER, R2, ("ok", REMOTE)), Watch) == []  # already watched
    names.cache.pids[KEY] = CHILD  # as if the key were bound to another pid since
    names.pid_down(REMOTE, "normal")
    assert names.cache.pids[KEY] == CHILD  # not the pid that died


def test_the_dead_memory_is_bounded_oldest_first():
    cache = NameCache(SERVER)
    for n in range(DEAD_MEMORY + 2):
        cache.remember_dead(Pid("n2", 1, n), "normal")
    assert len(cache.dead) == DEAD_MEMORY
    assert Pid("n2", 1, 0) not in cache.dead and Pid("n2", 1, DEAD_MEMORY + 1) in cache.dead
