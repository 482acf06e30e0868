"""`Fence`: a resource refuses tokens older than one it accepted."""

from __future__ import annotations

import pytest

from paxtor.locks.fence import Fence, StaleToken


def test_accepts_equal_and_newer_refuses_older_per_key() -> None:
    fence = Fence()
    fence.check("k", 3)
    fence.check("k", 3)  # same tenure writing again
    fence.check("k", 5)
    with pytest.raises(StaleToken) as info:
        fence.check("k", 4)
    assert (info.value.key, info.value.token, info.value.highest) == ("k", 4, 5)
    assert fence.highest("k") == 5  # a refused token does not lower the bar
    fence.check("other", 1)  # keys are independent
    assert fence.highest("other") == 1 and fence.highest("never") is None


@pytest.mark.parametrize("bad", [-1, 1.5, "3", None, True])
def test_a_token_is_a_non_negative_int(bad: object) -> None:
    with pytest.raises(TypeError):
        Fence().check("k", bad)  # type: ignore[arg-type]
