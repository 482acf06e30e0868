"""Paxtor: CP cluster-wide locks and singleton processes for gevent."""

from paxtor.node import Node, start_node

__all__ = ["Node", "start_node"]
