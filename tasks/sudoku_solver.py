"""Sudoku geometry, exact SAT solver, DFS rating and puzzle generator (gram-paper.md §4, §5.2).

Grids are flat int64 arrays of ``n*n`` cells in row-major order, ``0`` for a blank and ``1..n`` for a
digit (``n`` is 4 or 9).  Two engines:

* :class:`SudokuSAT` — Sudoku as CNF (``n**3`` variables) on a persistent python-sat solver (MiniSat 2.2).
  Givens enter as assumptions; enumeration blocks each model with a clause guarded by a fresh
  activation literal that is switched off afterwards, so one solver serves every puzzle
  (baselines-and-data.md §6.3: solve, block, re-solve).  Exact: solving, uniqueness and enumeration.
* :func:`dfs_solve` — depth-first search with naked- and hidden-singles propagation to fixpoint.  Its
  guess count (search nodes that branch) is the difficulty rating of baselines-and-data.md §6.4; with an
  ``rng`` it draws random full grids.

:func:`generate_puzzle` draws a random full grid and digs its clues in random order while the solution
stays unique, which yields a minimal puzzle (a clue that cannot be removed at some point can never be
removed later, because fewer clues only admit more solutions).
"""

from __future__ import annotations

from functools import lru_cache
from math import isqrt

import numpy as np
from pysat.solvers import Solver

SIZES = (4, 9)
_RENEW = 1000  # activation variables per solver before it is rebuilt (measured, see docs)


@lru_cache(maxsize=None)
def geometry(n: int) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...], tuple[frozenset, ...]]:
    """``(units, units_of_cell, peers)`` for an ``n x n`` board: rows, columns, then boxes."""
    if n not in SIZES:
        raise ValueError(f"Sudoku size must be one of {SIZES}, got {n}")
    b = isqrt(n)
    rows = [tuple(r * n + c for c in range(n)) for r in range(n)]
    cols = [tuple(r * n + c for r in range(n)) for c in range(n)]
    boxes = [
        tuple((br * b + i) * n + bc * b + j for i in range(b) for j in range(b)) for br in range(b) for bc in range(b)
    ]
    units = tuple(rows + cols + boxes)
    units_of = tuple(tuple(u for u in units if c in u) for c in range(n * n))
    peers = tuple(frozenset(q for u in units_of[c] for q in u if q != c) for c in range(n * n))
    return units, units_of, peers


def cell_name(c: int, n: int) -> str:
    """1-based ``rRcC`` name of flat cell index ``c``."""
    return f"r{c // n + 1}c{c % n + 1}"


def find_conflict(grid: np.ndarray, n: int) -> str | None:
    """Describe the first repeated digit in a row, column or box of ``grid`` (blanks ignored), or None."""
    units = geometry(n)[0]
    for k, unit in enumerate(units):
        seen: dict[int, int] = {}
        for c in unit:
            d = int(grid[c])
            if d == 0:
                continue
            if d in seen:
                kind = ("row", "column", "box")[k // n]
                return (
                    f"digit {d} at {cell_name(c, n)} repeats in {kind} {k % n + 1} "
                    f"(also at {cell_name(seen[d], n)})"
                )
            seen[d] = c
    return None


def is_complete_valid(grid: np.ndarray, n: int) -> bool:
    """Every row, column and box of ``grid`` holds ``1..n`` exactly once."""
    g = np.asarray(grid).reshape(n, n)
    b = isqrt(n)
    boxes = g.reshape(b, b, b, b).transpose(0, 2, 1, 3).reshape(n, n)
    want = np.arange(1, n + 1)
    return all(bool((np.sort(a, axis=1) == want).all()) for a in (g, g.T, boxes))


def _cnf(n: int) -> list[list[int]]:
    """Exactly one digit per cell and exactly one cell per digit in each unit; var(c, d) = c*n + d."""
    units = geometry(n)[0]
    clauses = []
    for c in range(n * n):
        lits = [c * n + d for d in range(1, n + 1)]
        clauses.append(lits)
        clauses += [[-lits[i], -lits[j]] for i in range(n) for j in range(i + 1, n)]
    for unit in units:
        for d in range(1, n + 1):
            lits = [c * n + d for c in unit]
            clauses.append(lits)
            clauses += [[-lits[i], -lits[j]] for i in range(n) for j in range(i + 1, n)]
    return clauses


class SudokuSAT:
    """A persistent SAT solver for ``n x n`` Sudoku; use :func:`sat` to get the shared one per size."""

    def __init__(self, n: int) -> None:
        geometry(n)
        self.n = n
        self._clauses = _cnf(n)
        self._solver = Solver(name="minisat22", bootstrap_with=self._clauses)
        self._top = n**3

    def _assumptions(self, grid: np.ndarray) -> list[int]:
        return [int(c) * self.n + int(grid[c]) for c in np.flatnonzero(grid)]

    def _fresh(self) -> int:
        """A new activation variable; the solver is rebuilt once every ``_RENEW`` of them, since spent
        activation variables slow every later call down."""
        if self._top - self.n**3 >= _RENEW:
            self._solver.delete()
            self._solver = Solver(name="minisat22", bootstrap_with=self._clauses)
            self._top = self.n**3
        self._top += 1
        return self._top

    def solutions(self, grid: np.ndarray, limit: int) -> np.ndarray:
        """Up to ``limit`` solutions of ``grid`` as int64 [s, n*n] (digits 1..n), in solver order."""
        n, grid = self.n, np.asarray(grid, dtype=np.int64).reshape(-1)
        assumptions = self._assumptions(grid)
        blanks = np.flatnonzero(grid == 0)
        act = self._fresh()
        found = []
        while len(found) < limit and self._solver.solve(assumptions=assumptions + [act]):
            model = np.asarray(self._solver.get_model()[: n**3]).reshape(n * n, n)
            sol = (model > 0).argmax(axis=1) + 1
            found.append(sol)
            self._solver.add_clause([-act] + [-(int(c) * n + int(sol[c])) for c in blanks])
        self._solver.add_clause([-act])
        return np.asarray(found, dtype=np.int64).reshape(len(found), n * n)

    def has_other_solution(self, grid: np.ndarray, solution: np.ndarray) -> bool:
        """Does ``grid`` admit a solution other than the known ``solution``?  One SAT call."""
        n = self.n
        act = self._fresh()
        blanks = np.flatnonzero(np.asarray(grid).reshape(-1) == 0)
        self._solver.add_clause([-act] + [-(int(c) * n + int(solution[c])) for c in blanks])
        other = self._solver.solve(assumptions=self._assumptions(grid) + [act])
        self._solver.add_clause([-act])
        return bool(other)


_SAT: dict[int, SudokuSAT] = {}


def sat(n: int) -> SudokuSAT:
    """The process-wide :class:`SudokuSAT` for size ``n``."""
    if n not in _SAT:
        _SAT[n] = SudokuSAT(n)
    return _SAT[n]


def solve(grid: np.ndarray, n: int, limit: int = 2) -> np.ndarray:
    """Up to ``limit`` solutions of ``grid`` (int64 [s, n*n]); ``limit=2`` decides uniqueness."""
    return sat(n).solutions(grid, limit)


def is_unique(grid: np.ndarray, n: int) -> bool:
    """Does ``grid`` have exactly one solution?"""
    return len(solve(grid, n, 2)) == 1


# --- DFS with naked + hidden singles (baselines-and-data.md §6.4) -----------------------------------


def _propagate(cand: list[int], todo: list[tuple[int, int]], n: int) -> bool:
    """Apply the pending eliminations ``todo`` (cell, bit) and everything they imply by naked and
    hidden singles, in place; False on a contradiction."""
    _, units_of, peers = geometry(n)
    while todo:
        c, bit = todo.pop()
        m = cand[c]
        if not m & bit:
            continue
        m &= ~bit
        cand[c] = m
        if m == 0:
            return False
        if m & (m - 1) == 0:  # naked single: remove its digit from the peers
            todo.extend((p, m) for p in peers[c] if cand[p] & m)
        for unit in units_of[c]:  # hidden single: the digit has one place left in the unit
            places = [q for q in unit if cand[q] & bit]
            if not places:
                return False
            if len(places) == 1:
                rest = cand[places[0]] & ~bit
                while rest:
                    low = rest & -rest
                    todo.append((places[0], low))
                    rest ^= low
    return True


def _bits(m: int) -> list[int]:
    out = []
    while m:
        low = m & -m
        out.append(low)
        m ^= low
    return out


def dfs_solve(
    grid: np.ndarray, n: int, limit: int = 1, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, int]:
    """Depth-first search with singles propagation.  Returns ``(solutions [s, n*n], guesses)``.

    The branching cell is the first with the fewest candidates; digits are tried in increasing order,
    or in a random order drawn from ``rng``.  ``guesses`` counts search nodes that branch; with
    ``limit=1`` and no ``rng`` it is the difficulty :func:`rating`.
    """
    full = (1 << n) - 1
    cand = [full] * (n * n)
    grid = np.asarray(grid).reshape(-1)
    todo = [(int(c), b) for c in np.flatnonzero(grid) for b in _bits(full & ~(1 << (int(grid[c]) - 1)))]
    found: list[list[int]] = []
    guesses = 0

    def search(cand: list[int]) -> None:
        nonlocal guesses
        best, best_k = -1, n + 1
        for c, m in enumerate(cand):
            k = m.bit_count()
            if 1 < k < best_k:
                best, best_k = c, k
        if best < 0:
            found.append([m.bit_length() for m in cand])
            return
        guesses += 1
        options = _bits(cand[best])
        if rng is not None:
            options = [options[i] for i in rng.permutation(len(options))]
        for bit in options:
            child = list(cand)
            if _propagate(child, [(best, b) for b in _bits(child[best] & ~bit)], n):
                search(child)
            if len(found) >= limit:
                return

    if _propagate(cand, todo, n):
        search(cand)
    return np.asarray(found, dtype=np.int64).reshape(len(found), n * n), guesses


def rating(grid: np.ndarray, n: int) -> int:
    """Difficulty proxy: guesses of :func:`dfs_solve` until the first solution (0 = singles suffice)."""
    return dfs_solve(grid, n, limit=1)[1]


def random_grid(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random complete valid grid (randomised DFS from the blank board; not exactly uniform)."""
    return dfs_solve(np.zeros(n * n, dtype=np.int64), n, limit=1, rng=rng)[0][0]


def enumerate_grids(n: int) -> np.ndarray:
    """All complete valid grids of size ``n`` (288 for ``n=4``), sorted lexicographically."""
    if n != 4:
        raise ValueError("only the 4x4 grid space (288 grids) is small enough to enumerate")
    grids = solve(np.zeros(n * n, dtype=np.int64), n, limit=1000)
    return grids[np.lexsort(grids.T[::-1])]


def generate_puzzle(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random minimal puzzle with a unique solution: ``(puzzle, solution)``, int64 [n*n] each."""
    solution = random_grid(n, rng)
    puzzle = solution.copy()
    engine = sat(n)
    for c in rng.permutation(n * n):
        puzzle[c] = 0
        if engine.has_other_solution(puzzle, solution):
            puzzle[c] = solution[c]
    return puzzle, solution
