"""Graph 3-colouring of small Erdős–Rényi graphs (gram-paper.md §5.5; tokens §5.1; metrics §5.6).

Protocol (gram-paper.md §5.5, baselines-and-data.md §7.3): draw ``networkx.gnp_random_graph(n, p)`` graphs
from one seeded ``random.Random``, drop exact duplicates (same adjacency matrix) and graphs that are not
3-colourable, and stop at ``n_train + n_test`` graphs; a seeded ``numpy`` permutation splits them.
Every valid colouring is enumerated in canonical form (colours relabelled by first occurrence) by
symmetry-breaking backtracking, so each graph's ``Split.solutions`` entry is its complete canonical set.

Choices the paper leaves open (❓ in gram-paper.md §5.5): the edge probability ``p`` is not stated; the
default 0.4 follows the SVAH-X reproduction.  Which canonical colouring is the training target is not
stated; here every canonical colouring is a row (one row per (graph, colouring) pair, as for N-Queens).
Graphs are deduplicated by exact adjacency only: the test set may hold graphs isomorphic to training
graphs (``stats`` counts them).  n = 6 (1,500 / 100 graphs) is a small size not in the paper.

Tokens (gram-paper.md §5.1): input = strict upper triangle of the adjacency matrix, row-major
(``n(n-1)/2`` tokens, 1 no edge, 2 edge); answer = one token per vertex, colours 3/4/5; vocab 6.  The paper's
encoding decodes vertex v's colour at the position of an unrelated edge token; ``vertex-coloring-n`` (not in
the paper; issue 16) prepends one vertex token (6) per vertex, so each colour is decoded at its own vertex's
position and every edge token sits between two dedicated vertex positions: input ``n + n(n-1)/2`` tokens.
"""

from __future__ import annotations

import os
import random
from typing import Any

import networkx as nx
import numpy as np

from gram_tasks import register
from gram_tasks.base import Split, Task, TaskInputError
from gram_tasks.dimacs import parse_dimacs, read_dimacs
from gram_tasks.graph_pairs import edge_links

COLOURS = 3
NO_EDGE, EDGE, FIRST_COLOUR, VERTEX = 1, 2, 3, 6
DEFAULT_P = 0.4
SIZES: dict[int, tuple[int, int]] = {6: (1500, 100), 8: (7002, 255), 10: (13465, 192)}


def canonical_colourings(adj: list[int], limit: int | None = None) -> list[tuple[int, ...]]:
    """Canonical proper 3-colourings (colour indices 0..2) of the graph with neighbour bitmasks ``adj``.

    Vertices are coloured in index order and vertex ``v`` may use colour ``c`` only if ``c`` is at most
    one more than the largest colour used before it, so each colour class partition appears once, as
    its first-occurrence relabelling (baselines-and-data.md §7.3).  ``limit`` stops after that many.
    """
    n = len(adj)
    earlier = [adj[v] & ((1 << v) - 1) for v in range(n)]
    colour = [0] * n
    out: list[tuple[int, ...]] = []

    def extend(v: int, used: int, classes: tuple[int, ...]) -> bool:
        if v == n:
            out.append(tuple(colour))
            return limit is not None and len(out) >= limit
        for c in range(min(used + 1, COLOURS)):
            if not earlier[v] & classes[c]:
                colour[v] = c
                grown = classes[:c] + (classes[c] | 1 << v,) + classes[c + 1 :]
                if extend(v + 1, max(used, c + 1), grown):
                    return True
        return False

    extend(0, 0, (0,) * COLOURS)
    return out


def _is_colour(tokens: np.ndarray) -> np.ndarray:
    return (tokens >= FIRST_COLOUR) & (tokens < FIRST_COLOUR + COLOURS)


def canonicalise(y: np.ndarray) -> np.ndarray:
    """Relabel colour tokens of each row of ``y`` [..., n] by first occurrence (3, 4, 5 in that order).

    Tokens that are not colours are left as they are.
    """
    y = np.asarray(y, dtype=np.int64)
    rows = y.reshape(-1, y.shape[-1])
    c = rows - FIRST_COLOUR
    is_colour = _is_colour(rows)
    n = rows.shape[1]
    hit = c[:, :, None] == np.arange(COLOURS)
    first = np.where(hit.any(axis=1), hit.argmax(axis=1), n + np.arange(COLOURS))
    rank = np.argsort(np.argsort(first, axis=1), axis=1)
    relabelled = np.take_along_axis(rank, np.clip(c, 0, COLOURS - 1), axis=1) + FIRST_COLOUR
    return np.where(is_colour, relabelled, rows).reshape(y.shape)


class GraphColoringTask(Task):
    """3-colour a graph on ``n`` vertices given as its upper-triangle adjacency tokens (gram-paper.md §5.5).

    ``verify(x, y)``: every vertex has a colour token 3..5 and no edge joins two equal colours.
    ``solutions(x)``: all canonical colourings.  ``augment``: a random vertex relabelling per row.
    ``vertex_tokens``: prepend ``n`` vertex tokens (the ``vertex-coloring-n`` encoding, module docstring);
    the graphs, splits and solutions are the same as ``graph-coloring-n``'s.
    """

    def __init__(self, n: int, n_train: int, n_test: int, p: float = DEFAULT_P, vertex_tokens: bool = False):
        self.n, self.n_train, self.n_test, self.p = n, n_train, n_test, p
        self.offset = n if vertex_tokens else 0  # leading vertex tokens before the upper triangle
        self.name = f"vertex-coloring-{n}" if vertex_tokens else f"graph-coloring-{n}"
        self.vocab_size = VERTEX + 1 if vertex_tokens else FIRST_COLOUR + COLOURS
        self.seq_len, self.out_len = self.offset + n * (n - 1) // 2, n
        self._iu, self._ju = np.triu_indices(n, 1)
        self._pos = np.zeros((n, n), dtype=np.int64)
        self._pos[self._iu, self._ju] = self._pos[self._ju, self._iu] = np.arange(len(self._iu))
        self._cache: dict[int, tuple[np.ndarray, list[np.ndarray], dict[str, int]]] = {}

    # --- graphs <-> tokens --------------------------------------------------------------------
    def _tokens_of(self, adj: list[int]) -> np.ndarray:
        bits = np.array([adj[i] >> j & 1 for i, j in zip(self._iu.tolist(), self._ju.tolist())], dtype=np.int64)
        return np.concatenate([np.full(self.offset, VERTEX, dtype=np.int64), NO_EDGE + bits * (EDGE - NO_EDGE)])

    def _edges(self, x: np.ndarray) -> np.ndarray:
        """Edge mask [..., n(n-1)/2] over the upper triangle from input tokens [..., seq_len]."""
        return np.asarray(x)[..., self.offset :] == EDGE

    def _adjacency(self, x: np.ndarray) -> list[int]:
        adj = [0] * self.n
        for k in np.nonzero(self._edges(x))[0].tolist():
            i, j = int(self._iu[k]), int(self._ju[k])
            adj[i] |= 1 << j
            adj[j] |= 1 << i
        return adj

    def _colouring_tokens(self, adj: list[int]) -> np.ndarray:
        cols = canonical_colourings(adj)
        return np.array(cols, dtype=np.int64).reshape(len(cols), self.n) + FIRST_COLOUR

    def pair_structure(self) -> tuple[tuple[tuple[int, int, int], ...], int]:
        """(input position, vertex a, vertex b) triples and the token (EDGE) that links a and b (tasks/graph_pairs.py)."""
        return edge_links(self.n, self.offset), EDGE

    def _input_tokens(self, x: Any) -> np.ndarray | None:
        try:
            arr = np.asarray(x)
        except Exception:
            return None
        ok = (arr.shape == (self.seq_len,) and arr.dtype.kind in "iuf" and (arr[: self.offset] == VERTEX).all()
              and np.isin(arr[self.offset :], (NO_EDGE, EDGE)).all())
        return arr.astype(np.int64) if ok else None

    # --- data ---------------------------------------------------------------------------------
    def _generate(self, seed: int) -> tuple[np.ndarray, list[np.ndarray], dict[str, int]]:
        """(graphs as tokens [G, seq_len], canonical colourings per graph, sampling counts), cached."""
        seed = int(seed)
        if seed not in self._cache:
            rnd, seen = random.Random(seed), set()
            graphs, colourings = [], []
            info = {"sampled_graphs": 0, "duplicate_graphs": 0, "not_colourable": 0}
            target = self.n_train + self.n_test
            while len(graphs) < target:
                if info["sampled_graphs"] >= 100 * target:
                    raise TaskInputError(f"only {len(graphs)} of {target} distinct 3-colourable graphs after "
                                         f"{info['sampled_graphs']} draws of G({self.n}, {self.p})")
                g = nx.gnp_random_graph(self.n, self.p, seed=rnd)
                info["sampled_graphs"] += 1
                adj = [0] * self.n
                for u, v in g.edges():
                    adj[u] |= 1 << v
                    adj[v] |= 1 << u
                if tuple(adj) in seen:
                    info["duplicate_graphs"] += 1
                    continue
                seen.add(tuple(adj))
                cols = self._colouring_tokens(adj)
                if not len(cols):
                    info["not_colourable"] += 1
                    continue
                graphs.append(self._tokens_of(adj))
                colourings.append(cols)
            self._cache[seed] = (np.stack(graphs), colourings, info)
        return self._cache[seed]

    def _split_ids(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        perm = np.random.default_rng(int(seed)).permutation(self.n_train + self.n_test)
        return np.sort(perm[: self.n_train]), np.sort(perm[self.n_train :])

    def build(self, seed: int = 0) -> dict[str, Split]:
        """``{"train", "test"}`` with ``n_train`` / ``n_test`` graphs; one row per (graph, canonical colouring)."""
        graphs, colourings, _ = self._generate(seed)
        out = {}
        for split_name, ids in zip(("train", "test"), self._split_ids(seed)):
            sols = [colourings[i].copy() for i in ids]
            counts = np.array([len(s) for s in sols], dtype=np.int64)
            out[split_name] = Split(
                x=np.repeat(graphs[ids], counts, axis=0),
                y=np.concatenate(sols),
                group=np.repeat(np.arange(len(ids), dtype=np.int64), counts),
                inputs=graphs[ids].copy(),
                solutions=sols,
                meta={"task": self.name, "seed": seed, "p": self.p},
            )
        return out

    def _nx_graph(self, x: np.ndarray) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(range(self.n))
        edges = self._edges(x)
        g.add_edges_from(zip(self._iu[edges].tolist(), self._ju[edges].tolist()))
        return g

    def _isomorphic_overlap(self, train: np.ndarray, test: np.ndarray) -> int:
        """Number of test graphs isomorphic to some training graph.

        Graphs are bucketed by an isomorphism invariant (the sorted multiset of each vertex's degree and
        sorted neighbour degrees); ``nx.is_isomorphic`` decides within a bucket.
        """
        def invariant(g: nx.Graph) -> tuple:
            return tuple(sorted((g.degree[v], tuple(sorted(g.degree[u] for u in g[v]))) for v in g))

        buckets: dict[tuple, list[nx.Graph]] = {}
        for x in train:
            g = self._nx_graph(x)
            buckets.setdefault(invariant(g), []).append(g)
        hits = 0
        for x in test:
            g = self._nx_graph(x)
            hits += any(nx.is_isomorphic(g, h) for h in buckets.get(invariant(g), []))
        return hits

    def stats(self, seed: int = 0) -> dict[str, Any]:
        graphs, colourings, info = self._generate(seed)
        counts = np.array([len(c) for c in colourings])
        train, test = self._split_ids(seed)
        return {
            "task": self.name,
            "n": self.n,
            "p": self.p,
            "seed": seed,
            **info,
            "train_graphs": int(len(train)),
            "test_graphs": int(len(test)),
            "train_rows": int(counts[train].sum()),
            "test_rows": int(counts[test].sum()),
            "mean_edges": float((graphs == EDGE).sum(axis=1).mean()),
            "mean_colourings": float(counts.mean()),
            "median_colourings": float(np.median(counts)),
            "max_colourings": int(counts.max()),
            "single_colouring_fraction": float((counts == 1).mean()),
            "test_isomorphic_to_train": self._isomorphic_overlap(graphs[train], graphs[test]),
        }

    def augment(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Relabel the vertices of each row by a random permutation ``pi`` (new vertex i = old ``pi[i]``),
        in the adjacency tokens and the colouring alike, then canonicalise the colouring."""
        x2, y2 = np.atleast_2d(x), np.atleast_2d(y)
        pi = rng.permuted(np.tile(np.arange(self.n), (x2.shape[0], 1)), axis=1)
        moved = self.offset + self._pos[pi[:, self._iu], pi[:, self._ju]]
        xa = np.take_along_axis(x2, np.concatenate([np.tile(np.arange(self.offset), (len(x2), 1)), moved], 1), axis=1)
        ya = canonicalise(np.take_along_axis(y2, pi, axis=1))
        return xa.reshape(np.shape(x)), ya.reshape(np.shape(y))

    # --- encoding -----------------------------------------------------------------------------
    def encode_input(self, obj: Any) -> np.ndarray:
        """``networkx.Graph`` or DIMACS ``.col`` path -> tokens [seq_len].

        Nodes ``0..m-1`` are used as they are; other node labels are relabelled in sorted order.  A graph
        with m < n vertices gets isolated vertices m..n-1.  More than n vertices, a self-loop, a directed
        graph or a graph that is not 3-colourable raises TaskInputError.
        """
        if isinstance(obj, (str, os.PathLike)):
            obj = read_dimacs(obj, max_vertices=self.n)
        if not isinstance(obj, nx.Graph):
            raise TaskInputError(f"expected a networkx.Graph or a DIMACS .col path, got {type(obj).__name__}")
        if obj.is_directed():
            raise TaskInputError("graph is directed; pass an undirected networkx.Graph")
        nodes = list(obj.nodes)
        if len(nodes) > self.n:
            raise TaskInputError(f"graph has {len(nodes)} vertices, at most {self.n} allowed")
        if set(nodes) != set(range(len(nodes))):
            try:
                nodes = sorted(nodes)
            except TypeError:
                raise TaskInputError("graph node labels are neither 0..m-1 nor sortable") from None
        index = {v: i for i, v in enumerate(nodes)}
        adj = [0] * self.n
        for u, v in obj.edges():
            if u == v:
                raise TaskInputError(f"self-loop on vertex {u!r}")
            adj[index[u]] |= 1 << index[v]
            adj[index[v]] |= 1 << index[u]
        if not canonical_colourings(adj, limit=1):
            raise TaskInputError(f"graph with {len(nodes)} vertices and {obj.number_of_edges()} edges "
                                 "is not 3-colourable")
        return self._tokens_of(adj)

    def read_input_file(self, content: str, source: str) -> nx.Graph:
        """A ``gram solve`` input file is DIMACS ``.col`` text (whatever its suffix), named ``source`` in messages."""
        return parse_dimacs(content, source=source, max_vertices=self.n)

    def encode_output(self, obj: Any) -> np.ndarray:
        """Colouring (sequence of ``n`` colours 0/1/2, or dict vertex -> colour) -> tokens [n].

        Checks the format only; ``verify`` judges whether it colours a graph properly.
        """
        if isinstance(obj, dict):
            if set(obj) != set(range(self.n)):
                raise TaskInputError(f"colouring dict must have keys 0..{self.n - 1}")
            obj = [obj[v] for v in range(self.n)]
        try:
            arr = np.asarray(obj)
        except (ValueError, TypeError):
            raise TaskInputError("colouring is not a sequence of integers") from None
        if arr.shape != (self.n,) or arr.dtype.kind not in "iu":
            raise TaskInputError(f"colouring must be {self.n} integers 0..{COLOURS - 1}, got shape {arr.shape} "
                                 f"dtype {arr.dtype}")
        bad = np.nonzero((arr < 0) | (arr >= COLOURS))[0]
        if len(bad):
            raise TaskInputError(f"vertex {bad[0]}: colour {arr[bad[0]]}, expected 0..{COLOURS - 1}")
        return arr.astype(np.int64) + FIRST_COLOUR

    def decode_output(self, tokens: np.ndarray) -> list[int]:
        """Tokens -> colour per vertex (0..2; -1 for a token that is not a colour)."""
        c = np.asarray(tokens, dtype=np.int64).ravel() - FIRST_COLOUR
        if c.size != self.n:
            raise TaskInputError(f"answer has {c.size} tokens, expected {self.n}")
        return np.where((c >= 0) & (c < COLOURS), c, -1).tolist()

    # --- checking -----------------------------------------------------------------------------
    def verify(self, x: np.ndarray, y: np.ndarray) -> bool:
        xt = self._input_tokens(x)
        try:
            yt = np.asarray(y)
        except Exception:
            return False
        if xt is None or yt.shape != (self.n,) or yt.dtype.kind not in "iuf":
            return False
        if not np.isin(yt, np.arange(FIRST_COLOUR, FIRST_COLOUR + COLOURS)).all():
            return False
        edges = self._edges(xt)
        return bool((yt[self._iu[edges]] != yt[self._ju[edges]]).all())

    def solutions(self, x: np.ndarray) -> np.ndarray:
        """All canonical colourings of ``x`` (empty for malformed tokens)."""
        xt = self._input_tokens(x)
        if xt is None:
            return np.empty((0, self.n), dtype=np.int64)
        return self._colouring_tokens(self._adjacency(xt))

    def canonical(self, y: np.ndarray) -> np.ndarray:
        return canonicalise(y)

    def conflict_edges(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Conflict edges of answers y [G, ..., n] for inputs x [G, seq_len] -> [G, ...].

        An edge is in conflict when its endpoints share a token or either is not a colour token.
        """
        y = np.asarray(y)
        yu, yv = y[..., self._iu], y[..., self._ju]
        bad = (yu == yv) | ~_is_colour(yu) | ~_is_colour(yv)
        edges = self._edges(x).reshape(len(x), *([1] * (y.ndim - 2)), -1)
        return (bad & edges).sum(axis=-1)

    def metrics(self, x: np.ndarray, samples: np.ndarray) -> dict[str, float]:
        """Base metrics (``accuracy``, ``distinct_valid``, canonical ``coverage``) plus conflict edges.

        An edge is in conflict when its endpoints share a token or either is not a colour token.
        ``conflict_edges_total`` sums over inputs and samples (gram-paper.md §5.5 🔶);
        ``conflict_edges_per_graph`` is the mean over inputs of the per-sample mean.
        """
        out = super().metrics(x, samples)
        x, s = np.asarray(x), np.asarray(samples)
        if not x.size or not s.size:
            return {**out, "conflict_edges_total": 0.0, "conflict_edges_per_graph": 0.0}
        conflicts = self.conflict_edges(x, s)
        out["conflict_edges_total"] = float(conflicts.sum())
        out["conflict_edges_per_graph"] = float(conflicts.mean(axis=1).mean())
        return out

    # --- analysis hooks (tasks.base.Task) -------------------------------------------------------
    drawing_key = "vertex colours as sampled; red edges join equal or missing colours"

    def answer_statistics(self, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        """Token counts plus ``conflict edges`` (the Table 1 metric, gram-paper.md §5.5)."""
        out = super().answer_statistics(x, y)
        out["conflict edges"] = self.conflict_edges(x, y)
        return out

    def draw(self, ax, answer: np.ndarray, x: np.ndarray | None = None) -> None:
        """The graph of ``x`` on a circle, vertices in their colours, conflict edges thick and red."""
        y = np.asarray(answer).reshape(-1)
        g = self._nx_graph(x) if x is not None else nx.empty_graph(self.n)
        palette = {FIRST_COLOUR: "tab:red", FIRST_COLOUR + 1: "tab:green", FIRST_COLOUR + 2: "tab:blue"}
        edge_colours = ["red" if y[a] == y[b] or not {int(y[a]), int(y[b])} <= palette.keys() else "black"
                        for a, b in g.edges]
        nx.draw_networkx(g, nx.circular_layout(g), ax=ax, node_color=[palette.get(int(t), "lightgrey") for t in y],
                         edge_color=edge_colours, node_size=160, font_size=7,
                         width=[2.5 if c == "red" else 1.0 for c in edge_colours])


for _n, (_train, _test) in SIZES.items():
    register(f"graph-coloring-{_n}", lambda _n=_n, _train=_train, _test=_test: GraphColoringTask(_n, _train, _test))
    register(f"vertex-coloring-{_n}",
             lambda _n=_n, _train=_train, _test=_test: GraphColoringTask(_n, _train, _test, vertex_tokens=True))
