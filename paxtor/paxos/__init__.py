"""PaxosKV: a leaderless per-key Basic Paxos (CASPaxos) key-value store."""
