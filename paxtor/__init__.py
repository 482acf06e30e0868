"""Paxtor: CP cluster-wide locks and singleton processes for gevent."""
