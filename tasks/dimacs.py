"""DIMACS ``.col`` graph reader for user graphs of the graph-colouring task (gram-paper.md §5.5).

Format: ``c`` comment lines, one ``p edge V E`` line (``p col V E`` is accepted too), then ``e u v`` lines
with 1-based vertices.  Blank lines are ignored.  The number of ``e`` lines must equal ``E``; an edge
listed twice (``e 1 2`` and ``e 2 1``) counts twice there but gives one edge.  The grammar is strict: lines
end in ``\n`` (or ``\r\n``), fields are separated by ASCII spaces or tabs, and numbers are ASCII digits
(no ``+``, ``_``, full-width or other Unicode digits).  Every problem raises
:class:`tasks.base.TaskInputError` with a one-line message that names the line number.
"""

from __future__ import annotations

import os
import re

import networkx as nx

from gram_tasks.base import TaskInputError
from gram_tasks.files import GRAPH_LIMIT, read_limited

FORMATS = ("edge", "col")


def _show(line: str, limit: int = 40) -> str:
    return repr(line if len(line) <= limit else line[:limit] + "...")


_DIGITS = re.compile(r"-?[0-9]{1,9}")  # a negative count or vertex is refused by range, below
_SEPARATORS = re.compile(r"[ \t]+")


def _int(field: str, where: str, what: str) -> int:
    if not _DIGITS.fullmatch(field):
        raise TaskInputError(f"{where}: {what} {_show(field)} is not an integer (ASCII digits 0-9 only)")
    return int(field)


def parse_dimacs(text: str, source: str = "<dimacs>", max_vertices: int | None = None) -> nx.Graph:
    """Parse DIMACS ``.col`` text into an undirected graph with nodes ``0..V-1``.

    ``max_vertices`` rejects a larger ``V`` at its ``p`` line (before any node is created).
    """
    graph: nx.Graph | None = None
    declared = p_line = edges_seen = 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r").strip(" \t")
        where = f"{source} line {lineno}"
        fields = _SEPARATORS.split(line) if line else []
        if not fields or fields[0] == "c":
            continue
        kind = fields[0]
        if kind == "p":
            if graph is not None:
                raise TaskInputError(f"{where}: second 'p' line (the first is line {p_line})")
            if len(fields) != 4 or fields[1] not in FORMATS:
                raise TaskInputError(f"{where}: expected 'p edge V E', got {_show(line)}")
            vertices = _int(fields[2], where, "vertex count")
            declared = _int(fields[3], where, "edge count")
            if vertices < 1 or declared < 0:
                raise TaskInputError(f"{where}: bad counts V={vertices} E={declared} (need V >= 1, E >= 0)")
            if max_vertices is not None and vertices > max_vertices:
                raise TaskInputError(f"{where}: graph has {vertices} vertices, at most {max_vertices} allowed")
            graph, p_line = nx.Graph(), lineno
            graph.add_nodes_from(range(vertices))
        elif kind == "e":
            if graph is None:
                raise TaskInputError(f"{where}: 'e' line before the 'p edge V E' line")
            if len(fields) != 3:
                raise TaskInputError(f"{where}: expected 'e u v', got {_show(line)}")
            u, v = (_int(f, where, "vertex") for f in fields[1:])
            for w in (u, v):
                if not 1 <= w <= graph.number_of_nodes():
                    raise TaskInputError(f"{where}: vertex {w} out of range 1..{graph.number_of_nodes()}")
            if u == v:
                raise TaskInputError(f"{where}: self-loop on vertex {u}")
            graph.add_edge(u - 1, v - 1)
            edges_seen += 1
        else:
            raise TaskInputError(f"{where}: malformed line {_show(line)} (expected a 'c', 'p' or 'e' line)")
    if not text.strip():
        raise TaskInputError(f"{source}: empty file")
    if graph is None:
        raise TaskInputError(f"{source}: missing 'p edge V E' line")
    if edges_seen != declared:
        raise TaskInputError(f"{source} line {p_line}: 'p' line declares {declared} edges "
                             f"but the file has {edges_seen} 'e' lines")
    return graph


def read_dimacs(path: str | os.PathLike, max_vertices: int | None = None, limit: int = GRAPH_LIMIT) -> nx.Graph:
    """Read a DIMACS ``.col`` file of at most ``limit`` bytes (see :func:`parse_dimacs`).

    A string that holds a line break is DIMACS text, not a file name, and is parsed as it is."""
    if isinstance(path, str) and "\n" in path:
        return parse_dimacs(path, max_vertices=max_vertices)
    try:
        text = read_limited(path, "DIMACS", limit).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TaskInputError(f"cannot read DIMACS file {os.fspath(path)!r}: {type(err).__name__}") from None
    return parse_dimacs(text, source=os.fspath(path), max_vertices=max_vertices)
