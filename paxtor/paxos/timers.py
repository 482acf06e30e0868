"""Moved to `paxtor.actors.timers` (timers belong to the runtime).

This re-export stays only until `proposer_server` and `lock_home` import
from `paxtor.actors.timers`; then delete this module.
"""

from __future__ import annotations

from paxtor.actors.timers import TimerHandle, send_after

__all__ = ["TimerHandle", "send_after"]
