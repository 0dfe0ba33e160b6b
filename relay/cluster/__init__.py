"""Relays as a cluster on Redis: the directory (nodes, claims), edge pulls, the shared book."""

from .directory import Directory, DirectoryDown
from .edge import EDGE_KIND, EdgePull, Edges
from .service import Cluster

__all__ = ["EDGE_KIND", "Cluster", "Directory", "DirectoryDown", "EdgePull", "Edges"]
