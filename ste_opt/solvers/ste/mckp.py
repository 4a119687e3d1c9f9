"""The multiple-choice knapsack at a fixed straggler time, in time and memory linear in M.

At straggler time τ the STE problem's numerator is the multiple-choice knapsack (docs/MODEL.md §3)

    F*(τ) = max Σ_m F_m(K_m)   s.t.   Σ_m C_m(K_m) ≤ W_tot,   C_m(K) = W_min_m(K, τ).

F_m is concave and C_m convex in K, so each device's increment ratios ``ΔF/ΔC`` are
non-increasing and, for a price λ, the maximizer of ``F_m − λ C_m`` is the first level whose
next increment has ratio ≤ λ: a binary search per device (O(M log L) per λ), no sort of all
M·L increments. This module provides

- :class:`Node`: the W_min table at τ and its left τ-slope, computed in row chunks (one (M, L)
  float64 table each; nothing else of that size is kept for large M);
- :meth:`Node.lp`: the LP bound ``Φ(λ*)`` (the Lagrangian at its minimizing price, which equals the
  LP relaxation), the Lagrangian integer solution and a greedy fill;
- :meth:`Node.interval_bound`: the tangent interval bound of ``global`` (see
  :func:`ste_opt.solvers.ste.knapsack.interval_bound`) by the same per-device search;
- :func:`exact_integer_step`: the **exact** integer knapsack at τ: reduced-cost fixing around the
  Lagrangian price leaves a small core of (device, level) options that can still beat a target,
  and a best-first branch and bound on the fractional device over the core finds the integer
  optimum (within a relative gap) or proves that nothing beats the target. This is what closes
  the LP–integer gap that splitting τ cannot.

Validity: every bound returned is ``Φ(λ)`` for some λ ≥ 0 (a Lagrangian bound, valid for any λ),
evaluated with the true row maxima: the per-device search gives the row maximum when the ratios
are non-increasing, which is checked on every table; rows that are not (rounding) are evaluated by
a full argmax. Costs and slopes are the problem's own (:class:`ste_opt.model.allocation.UplinkWindows`).
"""
from __future__ import annotations

import numpy as np

from ...errors import SolverError
from ...model.channel import BANDWIDTH_SAFETY, LN2, log1p_root
from .knapsack import levels_of, polish

__all__ = ["Static", "Node", "FreeNode", "new_node", "exact_integer_step", "ExactResult",
           "knapsack_token_step"]

CHUNK = 1 << 16         # table entries per chunk (keeps temporaries in cache)
_MONO_RTOL = 1e-10      # ratio rows non-increasing up to this (rounding); else full argmax
_SMALL = 300_000       # tables up to this size: choose by counting (no per-device search)
_BAND = 4              # table-free LP: levels either side of each device's predicted level
_FREE = 11_000         # tables above this size: no tables (FreeNode; faster from about here on)
_FINAL = 2_000         # LP: bisect on λ until max(this, M/4) increments are left, then sort them


class Static:
    """Per-problem data shared by every τ: the level grid, each device's first column, the value
    table (a view of ``problem.WF``) and the per-device quantities of W_min."""

    def __init__(self, problem, tables: str = "auto"):
        self.problem = problem
        self.lev = levels_of(problem)
        assert np.all(np.diff(self.lev) == 1) and self.lev[-1] == problem.N
        self.k0 = int(self.lev[0])
        self.L = len(self.lev)
        self.M = problem.M
        self.F = problem.WF[:, self.k0:]                 # (M, L) view; F[m, j] = WF_m(lev[j])
        self.base = (problem.k_lo - self.k0).astype(np.intp)
        self.rows = np.arange(self.M)
        self.bits_lev = problem.payload_bits(self.lev)[None, :]      # (1, L)
        self.rows_per_chunk = max(1, CHUNK // self.L)
        self.W_tot = float(problem.W_tot)
        self.WF_flat = problem.WF.reshape(-1)
        self.WF_off = self.rows * problem.WF.shape[1] + self.k0
        self.table_free = self.M * (self.L - 1) > _SMALL
        # W_min and its τ-slope are convex in K when the payload is affine in K (see Node)
        self.convex_in_k = bool(np.all(np.diff(self.bits_lev[0], 2) == 0))
        self.zero_bits = bool(np.any(self.bits_lev <= 0))
        # large problems: no tables (FreeNode), when the searches need no convexity checks;
        # ``tables``: "auto" (that rule), "full" (always tables), "none" (never)
        if tables not in ("auto", "full", "none"):
            raise SolverError(f"tables must be 'auto', 'full' or 'none', got {tables!r}")
        if tables == "none" and not self.convex_in_k:
            raise SolverError("tables='none' needs a payload affine in the tokens")
        self.free = self.convex_in_k and (tables == "none" or (
            tables == "auto" and self.M * (self.L - 1) > _FREE))
        self.has_low = bool(np.any(self.base > 0))
        self.low_mask = (np.arange(self.L)[None, :] < self.base[:, None]) if self.has_low and \
            not self.table_free else None
        # rows whose values are not concave in K (rounding aside): searched by full argmax
        bad = np.zeros(self.M, dtype=bool)
        if self.table_free or self.free:
            for r0, r1 in self.chunks():
                dF = np.diff(self.F[r0:r1], axis=1)
                bad[r0:r1] = np.any(np.diff(dF, axis=1) > 1e-12 * (np.abs(dF[:, :-1]) + 1e-300), axis=1)
        self.bad_F = bad
        self.bad_rows = np.flatnonzero(bad) if bad.any() else None
        # Energy-limited devices (p = E/t) have a τ-independent root x of ln(1+x) = c x:
        # c = S ln2 N0 / (E h). Their roots are computed once per device (lazily) and every
        # τ's W_min is a / x (a = p h / N0), as in ``min_bandwidth_hz``.
        up = problem.uplink
        with np.errstate(divide="ignore"):
            self.c_energy = LN2 * up.noise_psd_w_hz / (up.energy_j * up.gain)  # (M,): c / S
        self.x_energy = None
        self.have_x = np.zeros(self.M, dtype=bool)

    def energy_roots(self, idx):
        """(len(idx), L) roots x for energy-limited rows ``idx`` (0 where no bandwidth sends the
        level: W = inf; nan where the level has no bits: W = 0)."""
        if self.x_energy is None:
            self.x_energy = np.empty((self.M, self.L))
        need = idx[~self.have_x[idx]]
        if need.size:
            c = self.c_energy[need][:, None] * self.bits_lev
            x = log1p_root(c)
            x = np.where((c > 0) & (c < 1), x, 0.0)
            x[np.broadcast_to(self.bits_lev <= 0, x.shape)] = np.nan
            self.x_energy[need] = x
            self.have_x[need] = True
        return self.x_energy[idx]

    def table_chunk(self, tau, r0, r1, slopes):
        """``(W, |∂W/∂τ|)`` of rows r0..r1 at τ (the slope None without ``slopes``): the model's
        least bandwidth and slope (``UplinkWindows``), with the energy-limited rows from their
        cached roots (same formulas, no root finding)."""
        up = self.problem.uplink
        sl = slice(r0, r1)
        t_raw = tau - up.offset_s[sl]
        t = np.minimum(t_raw, up.cap_s[sl])
        pos = t > 0
        ts = np.where(pos, t, 1.0)
        e_over_t = up.energy_j[sl] / ts
        en = pos & (up.p_max_w[sl] > e_over_t)
        n_en = int(np.count_nonzero(en))
        if n_en < 64:
            w = up.least_bandwidth_hz(self.bits_lev, tau, rows=sl)
            g = -up.least_bandwidth_slope(tau, w, rows=sl) if slopes else None
            return w, g
        w = np.empty((r1 - r0, self.L))
        g = np.empty((r1 - r0, self.L)) if slopes else None
        ie = np.flatnonzero(en)
        if n_en < r1 - r0:
            io = np.flatnonzero(~en)
            w[io] = up.least_bandwidth_hz(self.bits_lev, tau, rows=r0 + io)
            if slopes:
                g[io] = -up.least_bandwidth_slope(tau, w[io], rows=r0 + io)
        a = (e_over_t[ie] * up.gain[r0 + ie] / up.noise_psd_w_hz)[:, None]
        x = self.energy_roots(r0 + ie)
        with np.errstate(divide="ignore", invalid="ignore"):
            we = a / x * (1.0 + BANDWIDTH_SAFETY)
        if self.zero_bits:
            we[np.isnan(x)] = 0.0
        w[ie] = we
        if slopes:
            growing = (t_raw[ie] > 0) & (t_raw[ie] <= up.cap_s[r0 + ie])
            ge = we / ts[ie][:, None]
            if growing.all() and np.isfinite(we[:, -1]).all():     # (W increases in K)
                g[ie] = ge
            else:
                g[ie] = np.where(growing[:, None] & np.isfinite(we), ge, 0.0)
        return w, g

    def chunks(self):
        r = self.rows_per_chunk
        for r0 in range(0, self.M, r):
            yield r0, min(r0 + r, self.M)


class Node:
    """Tables at one straggler time τ: ``W`` (M, L) least bandwidths (``W[m, j] = W[m, base_m]``
    below a device's first level; ``inf`` where impossible) and ``G`` (M, L) = |∂W/∂τ| from the
    left (for the tangent interval bound)."""

    def __init__(self, st: Static, tau: float, slopes: bool = True):
        self.st = st
        self.tau = float(tau)
        M, L = st.M, st.L
        self.W = np.empty((M, L))
        # |slope| in float32, rounded towards zero: the tangent costs W + d G stay below W_min
        self.G = np.empty((M, L), dtype=np.float32) if slopes else None
        ar = np.arange(L)[None, :]
        jj = np.arange(L - 1)[None, :]
        Rb = np.empty((M, L - 1)) if st.table_free else None
        # The table-free per-device search needs W (and G, for the tangent costs W + d G, d ≥ 0)
        # convex in K. With a payload affine in K that is a property of the model (W_min is convex
        # in the rate S/t and so is (S/t)·∂W_min/∂(S/t); docs/certified.md): rounding can then
        # move a row maximum by a few ulps of λ W only, far inside BOUND_SLACK. Otherwise rows
        # that are not convex are flagged (and searched by full argmax).
        check = st.table_free and not st.convex_in_k
        bad_b = st.bad_F.copy()
        bad_g = np.zeros(M, dtype=bool)

        def nonconvex(X):
            with np.errstate(invalid="ignore"):
                d2 = X[:, 2:] - X[:, 1:-1]
                d2 -= X[:, 1:-1]
                d2 += X[:, :-2]
                return np.any(d2 < -1e-9 * X[:, 1:-1], axis=1)

        for r0, r1 in st.chunks():
            sl = slice(r0, r1)
            w, g = st.table_chunk(self.tau, r0, r1, slopes)
            bcol = st.base[sl]
            low = bcol > 0
            if low.any():                     # below a device's first level: its first level's cost
                lowm = ar < bcol[:, None]
                w = np.where(lowm, w[np.arange(r1 - r0), bcol][:, None], w)
            self.W[sl] = w
            if Rb is not None:
                if check:
                    bad_b[sl] |= nonconvex(w)
                # the increment ratios at τ (the b end), while the chunk is in cache
                r = Rb[sl]
                with np.errstate(invalid="ignore", divide="ignore"):
                    np.divide(np.diff(st.F[sl], axis=1), np.diff(w, axis=1), out=r)
                if not np.isfinite(w[:, -1]).all():      # (W increases in K: the last level is the largest)
                    r[np.isnan(r) | ~np.isfinite(w[:, 1:])] = -1.0
                if low.any():
                    r[jj < bcol[:, None]] = np.inf
            if slopes:
                if low.any():
                    g = np.where(lowm, g[np.arange(r1 - r0), bcol][:, None], g)
                np.multiply(g, 1 - 2.5e-7, out=self.G[sl], casting="same_kind")
                if check:
                    bad_g[sl] = nonconvex(g)
        self.feasible = bool(np.all(np.isfinite(self.W[st.rows, st.base]))) and \
            float(np.sum(self.W[st.rows, st.base])) <= st.W_tot
        self._R = {}
        self._last = {}
        self._phi_memo = {}
        if Rb is not None:
            self._bad = {None: np.flatnonzero(bad_b) if bad_b.any() else None,
                         "a": np.flatnonzero(bad_b | bad_g) if (bad_b | bad_g).any() else None}
            self._R[None] = (Rb, self._bad[None])
        self.Wf = self.W.reshape(-1)
        self.Gf = self.G.reshape(-1) if self.G is not None else None
        self.direct = not st.table_free       # Φ at one price by full row maxima (small tables)
        self.lam = None
        self.lp_value = -np.inf
        self.tokens = None
        self.int_value = -np.inf

    # ------------------------------------------------------------------ table access
    def w_at(self, idx, j):
        """Least bandwidths ``W[idx, j]`` (Hz)."""
        return self.W[idx, j]

    def g_at(self, idx, j):
        """Slopes ``G[idx, j]`` (Hz/s, rounded towards zero)."""
        return self.G[idx, j]

    def row_costs(self, rows, d: float):
        """Whole rows of the costs ``W + d G`` of the devices ``rows`` (len(rows), L)."""
        return self.W[rows] + d * self.G[rows] if d else self.W[rows]

    # ------------------------------------------------------------------ ratio tables
    def offset(self, a: float | None) -> float:
        """Multiplier d of the slope table in the costs ``W + d·G`` at the end ``a``: ``τ − a`` left
        of τ (the tangent), 0 at τ, and ``τ − a`` inflated by 1e-6 right of τ (the tangent
        extended to the right, with the float32 slopes rounded up instead of down)."""
        if a is None or a == self.tau:
            return 0.0
        d = self.tau - float(a)
        return d if d > 0 else d * (1 + 1e-6)

    def cost_cols(self, cols, a: float | None):
        st = self.st
        w = self.w_at(st.rows, cols)
        d = self.offset(a)
        return w + d * self.g_at(st.rows, cols) if d else w

    def ratios(self, a: float | None = None):
        """``(R, bad)``: running-minimum increment ratios (M, L-1) of the costs at ``a`` and the
        rows whose exact ratios are not non-increasing (``None`` when there are none)."""
        key = None if a is None or a == self.tau else float(a)
        got = self._R.get(key)
        if got is not None:
            return got
        st = self.st
        if st.table_free:                  # (the b-end table is built with W)
            if key is not None and key > self.tau:
                raise ValueError("costs right of τ need full ratio tables (small problems)")
            return None, self._bad["a"]
        M, L = st.M, st.L
        R = np.empty((M, L - 1))
        bad = np.zeros(M, dtype=bool)
        d = self.offset(key)
        jj = np.arange(L - 1)[None, :]
        for r0, r1 in st.chunks():
            C = self.W[r0:r1] if key is None else self.W[r0:r1] + d * self.G[r0:r1]
            F = st.F[r0:r1]
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.diff(F, axis=1) / np.diff(C, axis=1)
            r[np.isnan(r) | ~np.isfinite(C[:, 1:])] = -1.0       # next level impossible
            r[jj < st.base[r0:r1, None]] = np.inf                # below the first level: forced
            rm = np.minimum.accumulate(r, axis=1)
            with np.errstate(invalid="ignore"):
                bad[r0:r1] = np.any(r - rm > _MONO_RTOL * np.abs(rm), axis=1)
            R[r0:r1] = rm
        out = (R, np.flatnonzero(bad) if bad.any() else None)
        self._R[key] = out
        self._last.pop(key, None)
        return out

    # ------------------------------------------------------------------ Lagrangian evaluation
    def choose(self, R, lam: float, start=None, key=None):
        """Per device: the first column whose next increment has ratio ≤ λ (rows of R are
        non-increasing): a count for small tables, else a short walk from ``start`` finished by a
        binary search on the devices still moving."""
        st = self.st
        if R is None:
            return self._choose_free(lam, start, key)
        M, n = R.shape
        if M * n <= _SMALL:
            return np.maximum(np.count_nonzero(R > lam, axis=1), st.base)
        flat = R.ravel()
        off = st.rows * n
        if start is None:
            return self._bsearch(flat, off, n, lam, st.rows, st.base.copy(), np.full(M, n, dtype=np.intp))
        cols = start.copy()
        # rightwards: R[cols] > λ
        idx = np.flatnonzero(flat[off + np.minimum(cols, n - 1)] > lam)
        idx = idx[cols[idx] < n]
        for _ in range(2):
            if not idx.size:
                break
            cols[idx] += 1
            idx = idx[cols[idx] < n]
            idx = idx[flat[off[idx] + cols[idx]] > lam]
        if idx.size:
            cols[idx] = self._bsearch(flat, off[idx], n, lam, idx, cols[idx] + 1,
                                      np.full(idx.size, n, dtype=np.intp))
        # leftwards: R[cols - 1] <= λ
        idx = np.flatnonzero(cols > st.base)
        idx = idx[flat[off[idx] + cols[idx] - 1] <= lam]
        for _ in range(2):
            if not idx.size:
                break
            cols[idx] -= 1
            idx = idx[cols[idx] > st.base[idx]]
            idx = idx[flat[off[idx] + cols[idx] - 1] <= lam]
        if idx.size:
            cols[idx] = self._bsearch(flat, off[idx], n, lam, idx, st.base[idx].copy(), cols[idx] - 1)
        return cols

    def _ratio(self, idx, j, d):
        """Increment ratio j -> j+1 (j ≤ L-2) of rows ``idx`` at costs W + d G, with the table
        conventions (+inf below the first level, -1 when the next level is impossible)."""
        st = self.st
        L = st.L
        o = idx * L + j
        w0 = self.Wf[o]
        w1 = self.Wf[o + 1]
        if d:
            w0 = w0 + d * self.Gf[o]
            w1 = w1 + d * self.Gf[o + 1]
        fo = st.WF_off[idx] + j
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (st.WF_flat[fo + 1] - st.WF_flat[fo]) / (w1 - w0)
        r[~np.isfinite(w1) | np.isnan(r)] = -1.0
        r[j < st.base[idx]] = np.inf
        return r

    def _choose_free(self, lam, start, key):
        st = self.st
        n = st.L - 1
        d = self.offset(key)
        rows = st.rows
        if start is None:
            return self._bsearch_free(lam, d, rows, st.base.copy(), np.full(st.M, n, dtype=np.intp))
        if n < 4:
            cols = start.copy()
            right = np.zeros(st.M, dtype=bool)
            idx = np.flatnonzero(cols < n)
            right[idx[self._ratio(idx, cols[idx], d) > lam]] = True
            left = np.zeros(st.M, dtype=bool)
            idx = np.flatnonzero((cols > st.base) & ~right)
            left[idx[self._ratio(idx, cols[idx] - 1, d) <= lam]] = True
            verified = None
        else:
            # one computation of the costs at j-1, j, j+1 around the start (ratios R(j-1),
            # R(j)): the level where the ratio line through them crosses λ, and both checks
            # where that level is j (R(cols) > λ: move right; R(cols-1) ≤ λ: move left); most
            # devices stay at their start, the others take one more computation below
            j = np.clip(start, 1, n - 2)
            jm1 = j - 1
            q = self._ratios_from(rows, jm1, d, 2)
            r0, r1 = q[:, 0], q[:, 1]
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                slope = r0 - r1
                ok = np.isfinite(r0) & np.isfinite(r1) & (r1 >= 0) & (slope > 0)
                step = np.where(ok, np.clip((r0 - lam) / np.where(ok, slope, 1.0), -48, 48), 0.0)
            cols = np.clip(jm1 + np.ceil(step).astype(np.intp), st.base, n)
            known = cols == j                  # both checks known
            r_here = r1                        # R(cols)
            r_prev = r0                        # R(cols - 1)
            right = known & (cols < n) & (r_here > lam)
            left = known & (cols > st.base) & (r_prev <= lam) & ~right
            rest = np.flatnonzero(~known)
            if rest.size:
                jr = np.clip(cols[rest] - 1, 0, n - 2)
                qr = self._ratios_from(rest, jr, d, 2, keep=True)
                mid = cols[rest] == jr + 1
                rr = (cols[rest] < n) & (np.where(mid, qr[:, 1], qr[:, 0]) > lam)
                right[rest] = rr
                left[rest] = (cols[rest] > st.base[rest]) & (np.where(mid, qr[:, 0], qr[:, 1]) <= lam) & ~rr
            verified = (jm1, cols.copy(), known, (rest, jr) if rest.size else None)
        idx = np.flatnonzero(right)
        for _ in range(2):
            if not idx.size:
                break
            cols[idx] += 1
            idx = idx[cols[idx] < n]
            idx = idx[self._ratio(idx, cols[idx], d) > lam]
        if idx.size:
            cols[idx] = self._gallop_free(lam, d, idx, cols[idx], right=True)
        idx = np.flatnonzero(left)
        for _ in range(2):
            if not idx.size:
                break
            cols[idx] -= 1
            idx = idx[cols[idx] > st.base[idx]]
            idx = idx[self._ratio(idx, cols[idx] - 1, d) <= lam]
        if idx.size:
            cols[idx] = self._gallop_free(lam, d, idx, cols[idx] - 1, right=False)
        if verified is not None:
            self._after_choose(key, verified, cols)
        return cols

    def _after_choose(self, key, verified, cols):
        """Hook after a per-device search that computed every device's costs at the levels
        j0 .. j0+2 (``verified = (j0, cols0, known, rest)``; the tables have nothing to do)."""

    def _ratios_from(self, idx, j, d, k, keep=False):
        """Increment ratios at j, ..., j + k - 1 of rows ``idx`` ((n, k))."""
        return np.column_stack([self._ratio(idx, j + i, d) for i in range(k)])

    def _predict(self, lam, d, start):
        """Each device's level where the line through its ratios at ``start`` and the level
        after it crosses λ (a start for the searches; at most 48 levels away)."""
        st = self.st
        n = st.L - 1
        if n < 3:
            return start.copy()
        j = np.clip(start, st.base, n - 2)
        q = self._ratios_from(st.rows, j, d, 2)
        r0, r1 = q[:, 0], q[:, 1]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            slope = r0 - r1
            ok = np.isfinite(r0) & np.isfinite(r1) & (r1 >= 0) & (slope > 0)
            step = np.where(ok, np.clip((r0 - lam) / np.where(ok, slope, 1.0), -48, 48), 0.0)
        return np.clip(j + np.ceil(step).astype(np.intp), st.base, n)

    def _gallop_free(self, lam, d, idx, known, right: bool):
        """First column with ratio ≤ λ of rows ``idx`` by steps of 4, 8, 16, ... from ``known``
        (a column with ratio > λ when moving ``right``, else one with ratio ≤ λ), then a binary
        search in the last step: the levels read stay near the start."""
        n = self.st.L - 1
        base = self.st.base[idx]
        lo = np.empty_like(known)
        hi = np.empty_like(known)
        cur = known.copy()
        todo = np.arange(idx.size)
        step = 4
        while todo.size:
            if right:
                p = np.minimum(cur[todo] + step, n)
                fin = p >= n
                inner = np.flatnonzero(~fin)
                fin[inner] = self._ratio(idx[todo[inner]], p[inner], d) <= lam
                done = todo[fin]                  # the answer is in (cur, p]
                lo[done] = cur[done] + 1
                hi[done] = p[fin]
            else:
                p = np.maximum(cur[todo] - step, base[todo])
                gt = self._ratio(idx[todo], p, d) > lam
                fin = gt | (p <= base[todo])
                done = todo[fin]                  # the answer is in (p, cur] (or [base, cur])
                lo[done] = np.where(gt, p + 1, p)[fin]
                hi[done] = cur[done]
            cur[todo[~fin]] = p[~fin]
            todo = todo[~fin]
            step *= 2
        return self._bsearch_free(lam, d, idx, lo, hi)

    def _bsearch_free(self, lam, d, idx, lo, hi):
        n = self.st.L - 1
        while True:
            act = np.flatnonzero(lo < hi)
            if not act.size:
                return lo
            mid = (lo[act] + hi[act]) >> 1
            gt = self._ratio(idx[act], np.minimum(mid, n - 1), d) > lam
            lo[act[gt]] = mid[gt] + 1
            hi[act[~gt]] = mid[~gt]

    @staticmethod
    def _bsearch(flat, off, n, lam, idx, lo, hi):
        """First column j in [lo, hi] of each row with R[j] ≤ λ (hi = n: none)."""
        while True:
            act = lo < hi
            if not act.any():
                return lo
            mid = (lo + hi) >> 1
            gt = flat[off + np.minimum(mid, n - 1)] > lam
            lo = np.where(act & gt, mid + 1, lo)
            hi = np.where(act & ~gt, mid, hi)

    def phi(self, lam: float, a: float | None = None, exact: bool = False):
        """``(Φ(λ), subgradient, columns)`` at the costs of end ``a`` (None: at τ). With
        ``exact`` (or for rows flagged non-monotone) the row maxima are full argmaxes."""
        st = self.st
        key = None if a is None or a == self.tau else float(a)
        memo = self._phi_memo.get(key)
        if memo is not None and memo[0] == lam and memo[1] == exact:
            return memo[2]                   # (the same price again: a child interval's end)
        R, bad = self.ratios(key)
        start = self._last.get(key)
        if start is None:
            start = self._last.get(None)
        cols = self.choose(R, lam, start, key)
        self._last[key] = cols
        if exact or bad is not None:
            rows = st.rows if exact else bad
            cols = cols.copy()
            cols[rows] = self._argmax_rows(rows, lam, key)
        f = float(np.sum(st.F[st.rows, cols]))
        c = float(np.sum(self.cost_cols(cols, key)))
        out = (lam * st.W_tot + f - lam * c, st.W_tot - c, cols)
        if key is None:
            self._phi_memo[key] = (lam, exact, out)
        return out

    def _argmax_rows(self, rows, lam, a):
        st = self.st
        out = np.empty(rows.size, dtype=np.intp)
        d = self.offset(a)
        step = st.rows_per_chunk
        j = np.arange(st.L)[None, :]
        for i in range(0, rows.size, step):
            rr = rows[i:i + step]
            C = self.row_costs(rr, d)
            with np.errstate(invalid="ignore"):
                V = st.F[rr] - lam * C
            V[~np.isfinite(C) | (j < st.base[rr, None])] = -np.inf
            out[i:i + step] = np.argmax(V, axis=1)
        return out

    def lp(self, lam_hint: float | None = None, cols_hint=None, fill_rounds: int = 30):
        """LP bound at τ (``Φ`` at the minimizing price λ*) and the Lagrangian integer solution
        topped up by a greedy fill. Sets ``lam, lp_value, tokens, int_value, int_cols``.

        λ* is bracketed by bisection (each step a per-device search) until few increments have
        ratios inside the bracket; those are sorted and taken greedily, which gives λ* exactly."""
        st = self.st
        if not self.feasible:
            return self
        R, bad = self.ratios()
        n = st.L - 1
        W_tot = st.W_tot
        ratio_at = (lambda i, j: self._ratio(i, j, 0.0)) if R is None else (lambda i, j: R[i, j])
        rows = st.rows

        def g(lam, start=None):
            cols = self.choose(R, lam, start)
            return W_tot - float(np.sum(self.w_at(rows, cols))), cols

        lam_star = None
        if (lam_hint is None or not lam_hint > 0 or cols_hint is None) and n >= 2:
            # no neighbour to start from: the median increment ratio at the middle levels
            mid_cols = np.maximum((st.base + n) // 2, st.base)
            mid_cols = np.minimum(mid_cols, n - 1)
            r = ratio_at(rows, mid_cols)
            r = r[np.isfinite(r) & (r > 0)]
            if r.size:
                lam_hint, cols_hint = float(np.median(r)), mid_cols
        if lam_hint is not None and lam_hint > 0 and cols_hint is not None:
            # bracket λ* from the previous price and columns (neighbouring τ: close by): steps in
            # log λ from the secant of g through the last two prices (x1.5, at least 0.1 %)
            x0 = np.log(lam_hint)
            gg, cc = g(lam_hint, cols_hint)
            pts = [(x0, gg)]
            up = gg < 0                       # g increases with λ: below the root, raise λ
            step = 1e-3
            lam_lo = lam_hi = None
            if up:
                lam_lo, cols_lo, v_lo = lam_hint, cc, gg
            else:
                lam_hi, cols_hi, v_hi = lam_hint, cc, gg
            x = x0
            while True:
                if len(pts) >= 2 and pts[-1][1] != pts[-2][1]:
                    (xa, ga), (xb, gb) = pts[-2], pts[-1]
                    est = abs(gb * (xb - xa) / (gb - ga)) * 1.5
                    step = min(max(est, step, 1e-3), 4 * step, 2.0)
                x = x + step if up else x - step
                lam = float(np.exp(x))
                if not up and lam < 1e-12 * lam_hint:
                    g0, c0 = g(0.0, cols_hi)
                    if g0 >= 0:
                        lam_star, cols_hi = 0.0, c0
                    else:
                        lam_lo, cols_lo, v_lo = 0.0, c0, g0
                    break
                gg, cc = g(lam, cols_lo if up else cols_hi)
                pts.append((x, gg))
                if up and gg >= 0:
                    lam_hi, cols_hi, v_hi = lam, cc, gg
                    break
                if not up and gg < 0:
                    lam_lo, cols_lo, v_lo = lam, cc, gg
                    break
                if up:
                    lam_lo, cols_lo, v_lo = lam, cc, gg
                else:
                    lam_hi, cols_hi, v_hi = lam, cc, gg
                step *= 2
        else:
            g0, cols_lo = g(0.0, np.full(st.M, n, dtype=np.intp))     # (λ = 0: the top levels)
            if g0 >= 0:                          # every useful level fits: λ* = 0
                lam_star, cols_hi = 0.0, cols_lo
            else:
                top = float(np.max(ratio_at(rows, np.minimum(st.base, n - 1)), initial=1.0))
                top = top if np.isfinite(top) and top > 0 else 1.0
                lam_lo, lam_hi, v_lo = 0.0, max(top, 1e-300) * 2, g0
                v_hi, cols_hi = g(lam_hi, st.base.copy())             # (every device at its first)
        if lam_star is None:
            # regula falsi (Illinois) in log λ once both ends are positive, else bisection
            side = 0                           # consecutive moves of the same end (Illinois)
            for _ in range(200):
                if int(np.sum(cols_lo - cols_hi)) <= max(_FINAL, st.M // 4):
                    break
                mid = np.sqrt(lam_lo * lam_hi) if lam_lo > 0 else lam_hi / 64
                if lam_lo > 0 and v_hi > v_lo:
                    xl, xh = np.log(lam_lo), np.log(lam_hi)
                    wl = 0.5 ** max(-side - 1, 0)
                    wh = 0.5 ** max(side - 1, 0)
                    xm = (xl * v_hi * wh - xh * v_lo * wl) / (v_hi * wh - v_lo * wl)
                    if xl + 0.02 * (xh - xl) < xm < xh - 0.02 * (xh - xl):
                        mid = float(np.exp(xm))
                gm, cm = g(mid, cols_hi)
                if gm >= 0:
                    lam_hi, cols_hi, v_hi = mid, cm, gm
                    side = side + 1 if side > 0 else 1
                else:
                    lam_lo, cols_lo, v_lo = mid, cm, gm
                    side = side - 1 if side < 0 else -1
            # increments between the two: sort by ratio, take while the budget lasts
            slack = W_tot - float(np.sum(self.w_at(rows, cols_hi)))
            cnt = cols_lo - cols_hi
            dev = np.repeat(rows, cnt)
            jj = np.repeat(cols_hi - np.cumsum(cnt) + cnt, cnt) + np.arange(dev.size)
            lam_star = lam_hi
            if dev.size:
                rr = ratio_at(dev, jj)
                dw = self.w_at(dev, jj + 1) - self.w_at(dev, jj)
                order = np.lexsort((jj, -rr))
                cum = np.cumsum(dw[order])
                k = int(np.searchsorted(cum, slack, side="right"))
                if k < dev.size:
                    lam_star = float(rr[order[k]])
                take = order[:k]
                cols_hi = cols_hi.copy()
                np.add.at(cols_hi, dev[take], 1)
        self.lam = max(lam_star, 0.0)
        self.lp_cols = cols_hi
        self._last[None] = cols_hi             # (the next searches at this τ start here)
        val, _, _ = self.phi(self.lam, None)
        self.lp_value = val
        self._keep_integer(cols_hi, fill_rounds)
        return self

    def _keep_integer(self, cols, fill_rounds):
        """The Lagrangian integer solution at the LP's levels ``cols``, topped up by the greedy
        fill: sets ``tokens``, ``int_value`` and ``int_cols``."""
        st = self.st
        kidx = self._fill(cols, fill_rounds)
        self.tokens = st.lev[kidx]
        self.int_value = float(np.sum(st.F[st.rows, kidx]))
        self.int_cols = kidx

    def _fill(self, cols, rounds):
        st = self.st
        F = st.F
        last = st.L - 1
        k = cols.copy()
        for _ in range(rounds):
            w_k = self.w_at(st.rows, k)
            spare = st.W_tot - float(np.sum(w_k))
            nxt = np.minimum(k + 1, last)
            with np.errstate(invalid="ignore"):
                dw = self.w_at(st.rows, nxt) - w_k
            df = F[st.rows, nxt] - F[st.rows, k]
            can = (k < last) & np.isfinite(dw) & (dw <= spare) & (df > 0)
            cand = np.flatnonzero(can)
            if cand.size == 0:
                break
            order = cand[np.argsort(-(df[cand] / np.maximum(dw[cand], 1e-300)), kind="stable")]
            cum = np.cumsum(dw[order])
            n = max(int(np.searchsorted(cum, spare, side="right")), 1)
            k[order[:n]] += 1
            if float(np.sum(self.w_at(st.rows, k))) > st.W_tot:
                k[order[:n]] -= 1
                break
        return k

    def interval_bound(self, a: float, target: float = -np.inf, iters: int = 30,
                       rtol: float = 1e-7):
        """Upper bound on the STE of every allocation with straggler time in ``[a, τ]``:
        ``min_λ max(Φ_τ(λ)/τ, Φ_a(λ)/a)`` with the tangent costs at a (see
        :func:`ste_opt.solvers.ste.knapsack.interval_bound`); every λ tried gives a valid bound.
        With ``a > τ`` (small problems only), the same bound on ``[τ, a]`` with the tangent at τ
        extended to the right: W_min is convex and non-increasing in τ, so for τ' ≥ τ it is
        above ``W(τ) − (τ' − τ)|∂W/∂τ|`` with the left slope (at least the right one).
        Requires :meth:`lp` first. Stops as soon as the bound is ``<= target``, or when the
        bracket on the minimizing λ no longer changes the bound by more than ``rtol``."""
        b = self.tau
        if not self.feasible:
            return -np.inf
        lam0 = self.lam
        vb, gb, _ = self.phi(lam0, None)
        if a == b:
            return vb / b
        try:
            va, ga, _ = self.phi(lam0, a)
            best = max(vb / b, va / a)
            # λ0 minimizes Φ_b: if the b-end dominates there it is optimal; the minimizer is to
            # the right of λ0 only if the a-end dominates with a negative subgradient
            if vb / b >= va / a or best <= target or ga >= 0:
                return best
            return self._interval_search(a, b, lam0, best, target, iters, rtol,
                                         start=(vb, gb, va, ga))
        finally:
            self._R.pop(float(a), None)          # the a-end ratio table is not reused
            self._last.pop(float(a), None)

    def fixed_price_bound(self, lam: float, a: float, start=None, start_a=None):
        """``max(Φ_τ(λ)/τ, Φ_a(λ)/a)`` at one given price λ ≥ 0 (tangent costs at ``a``): an upper
        bound on the STE of every allocation with straggler time in ``[a, τ]`` (as in
        :meth:`interval_bound`, for this λ only). Needs no LP at τ. ``start``, ``start_a``:
        levels to start the per-device searches from at the two ends (e.g. λ's levels at
        neighbouring τ; the a end starts from the τ end's levels without one).

        Returns ``(bound, bound_at_tau, levels, levels_a)``: the bound, its τ end ``Φ_τ(λ)/τ``
        (what no narrower interval ending at τ can go below with this λ), and the levels of both
        ends (None for small tables, whose row maxima are taken directly)."""
        if not self.feasible:
            return -np.inf, -np.inf, None, None
        if self.direct and lam > 0:                       # small tables: row maxima directly
            vb = self._phi_direct(lam, 0.0) / self.tau
            if a == self.tau:
                return vb, vb, None, None
            return max(vb, self._phi_direct(lam, self.offset(a)) / a), vb, None, None
        if start is not None and self._last.get(None) is None:
            self._last[None] = start
        vb, _, cols = self.phi(lam, None)
        vb /= self.tau
        if a == self.tau:
            return vb, vb, cols, cols
        try:
            if start_a is not None:
                self._last[float(a)] = start_a
            va, _, cols_a = self.phi(lam, a)
            return max(vb, va / a), vb, cols, cols_a
        finally:
            self._R.pop(float(a), None)
            self._last.pop(float(a), None)

    def lp_tau_slope(self) -> float:
        """``dF_LP/dτ`` at τ by the envelope theorem, ``λ* Σ_m |∂W_m/∂τ|`` at the LP's levels
        (the fractional device's share ignored): an estimate, for locating the best τ."""
        if self.lam is None or not self.feasible:
            return np.nan
        return float(self.lam * np.sum(self.g_at(self.st.rows, self.lp_cols)))

    def _phi_direct(self, lam: float, d: float) -> float:
        """``Φ(λ)`` (λ > 0) at the costs ``W + d G`` by a full maximum over each row's levels."""
        st = self.st
        C = self.W + d * self.G if d else self.W
        V = st.F - lam * C                    # (inf costs: -inf; λ > 0)
        if st.has_low:
            V[st.low_mask] = -np.inf          # below a device's first level
        return lam * st.W_tot + float(np.sum(np.max(V, axis=1)))

    def _interval_search(self, a, b, lam0, best, target, iters, rtol, start=None):
        """Minimize the convex ``h(λ) = max(Φ_b(λ)/b, Φ_a(λ)/a)`` right of λ0: bracket, then
        1-D cutting planes (the tangent lines of h at the bracket ends meet below h; their
        intersection is the next trial and a lower bound on min h). ``start``: ``(Φ_b, ∂Φ_b,
        Φ_a, ∂Φ_a)`` at λ0 when already known. The first trial right of λ0 is where the a-end's
        tangent at λ0 meets the b-end's value there (a little beyond), then steps grow by 4×."""
        def pick(vb_, gb_, va_, ga_):
            fb_, fa_ = vb_ / b, va_ / a
            return (fb_, gb_ / b) if fb_ >= fa_ else (fa_, ga_ / a)

        def h(lam):
            vb_, gb_, _ = self.phi(lam, None)
            va_, ga_, _ = self.phi(lam, a)
            return pick(vb_, gb_, va_, ga_)

        st = self.st
        lo = lam0
        if start is not None:
            v_lo, s_lo = pick(*start)
        else:
            v_lo, s_lo = h(lo)
        step = None
        if lam0 > 0 and start is not None and start[3] < 0:
            vb0, _, va0, ga0 = start
            step = (va0 / a - vb0 / b) / (-ga0 / a) * 1.5
            if not (np.isfinite(step) and 1e-9 * lam0 < step < lam0 / 64):
                step = lam0 / 64
        lam = lam0 if lam0 > 0 else 1e-9 * float(np.sum(st.F[:, -1])) / st.W_tot
        hi = None
        for _ in range(200):
            if step is not None:
                lam = lo + step
                step *= 4
            else:
                lam = lam * 2
            v, sl = h(lam)
            best = min(best, v)
            if best <= target:
                return best
            if sl >= 0:
                hi, v_hi, s_hi = lam, v, sl
                break
            lo, v_lo, s_lo = lam, v, sl
        if hi is None:
            return best
        for _ in range(iters):
            # tangent lines v_lo + s_lo (λ - lo) and v_hi + s_hi (λ - hi) meet at λx
            den = s_hi - s_lo
            lx = (v_lo - v_hi + s_hi * hi - s_lo * lo) / den if den > 0 else 0.5 * (lo + hi)
            lb = v_lo + s_lo * (lx - lo)
            if best - lb <= rtol * best or hi - lo <= 1e-12 * hi:
                break
            if not (lo + 1e-3 * (hi - lo) < lx < hi - 1e-3 * (hi - lo)):
                lx = 0.5 * (lo + hi)
            v, sl = h(lx)
            best = min(best, v)
            if best <= target:
                return best
            if sl < 0:
                lo, v_lo, s_lo = lx, v, sl
            else:
                hi, v_hi, s_hi = lx, v, sl
        return best


class FreeNode(Node):
    """A :class:`Node` without tables, for large problems: every least bandwidth and slope a
    search reads is computed when read, by the model's own formulas
    (:meth:`UplinkWindows.least_bandwidth_hz` and ``least_bandwidth_slope``, per device and
    level). A price search from the neighbouring τ's levels reads a few levels per device, far
    fewer than the L of a table, and nothing of size M·L is kept (memory O(M)). Used when the
    payload is affine in K (W_min and its slope convex in K: the searches need no check)."""

    def __init__(self, st: Static, tau: float, slopes: bool = True):
        self.st = st
        self.tau = float(tau)
        self.slopes = bool(slopes)
        self.G = None
        self.direct = False
        self._stash = None
        self._kept = None
        self._costs = None                    # (key, levels, costs there) of the last search
        wb = self.w_at(st.rows, st.base)
        self.feasible = bool(np.all(np.isfinite(wb))) and float(np.sum(wb)) <= st.W_tot
        self._R = {}
        self._last = {}
        self._phi_memo = {}
        self.lam = None
        self.lp_value = -np.inf
        self.tokens = None
        self.int_value = -np.inf

    def w_at(self, idx, j):
        st = self.st
        got = self._costs
        if got is not None and got[0] is None and got[1] is j and idx is st.rows:
            return got[2]
        bits = st.bits_lev[0, np.maximum(j, st.base[idx]) if st.has_low else j]
        return st.problem.uplink.least_bandwidth_hz(np.reshape(bits, (-1, 1)), self.tau,
                                                    rows=None if idx is st.rows else idx)[:, 0]

    def g_at(self, idx, j, w=None):
        w = self.w_at(idx, j) if w is None else w
        rows = None if idx is self.st.rows else idx
        g = -self.st.problem.uplink.least_bandwidth_slope(self.tau, w[:, None], rows=rows)[:, 0]
        return g * (1 - 2.5e-7)               # (as the tables: rounded towards zero)

    def cost_cols(self, cols, a: float | None):
        key = None if a is None or a == self.tau else float(a)
        got = self._costs
        if got is not None and got[0] == key and got[1] is cols:
            return got[2]
        w = self.w_at(self.st.rows, cols)
        d = self.offset(a)
        return w + d * self.g_at(self.st.rows, cols, w) if d else w

    def lp(self, lam_hint: float | None = None, cols_hint=None, fill_rounds: int = 30):
        """As :meth:`Node.lp`; first on a band of levels around each device's predicted level
        (one computation of the costs there), falling back to the per-device searches when a
        device's level at λ* is not strictly inside its band."""
        if self.feasible and self.st.L >= 4 * _BAND and not (
                lam_hint is not None and lam_hint > 0 and cols_hint is not None):
            lam_hint, cols_hint = self._coarse_hint()
        if self.feasible and self.st.L >= 4 * _BAND and lam_hint is not None and lam_hint > 0 \
                and cols_hint is not None:
            for _ in range(3):                 # (more bands, each centred on the last one's levels)
                got = self._band_lp(lam_hint, cols_hint, fill_rounds)
                if got is True:
                    return self
                if got is None:
                    break
                lam_hint, cols_hint = got
        return super().lp(lam_hint, cols_hint, fill_rounds)

    def _coarse_hint(self, count: int = 17):
        """A start for an LP with no neighbour: the LP on every ``stride``-th level (about
        ``count`` levels per device from its first; one computation of their costs), its price
        and levels. ``(None, None)`` when that LP has no price."""
        st = self.st
        n = st.L - 1
        stride = max(1, -(-n // (count - 1)))
        lev = np.minimum(st.base[:, None] + stride * np.arange(count)[None, :], n)
        W = st.problem.uplink.least_bandwidth_hz(st.bits_lev[0, lev], self.tau)     # (M, count)
        F = st.WF_flat[st.WF_off[:, None] + lev]
        with np.errstate(invalid="ignore", divide="ignore"):
            R = np.diff(F, axis=1) / np.diff(W, axis=1)
        R[~np.isfinite(W[:, 1:]) | np.isnan(R) | (np.diff(lev, axis=1) == 0)] = -1.0
        rows = st.rows

        def used(lam):
            k = np.count_nonzero(R > lam, axis=1)   # (ratios decrease along a row: a prefix)
            return float(np.sum(W[rows, k])), k

        w0, k0 = used(0.0)
        if w0 <= st.W_tot:
            return None, None                       # everything fits at λ = 0
        pos = R[R > 0]
        if not pos.size:
            return None, None
        lo, hi = np.log(pos.min()) - 1.0, np.log(pos.max()) + 1.0
        for _ in range(40):                         # bisection in log λ on the coarse table
            mid = 0.5 * (lo + hi)
            w, _ = used(float(np.exp(mid)))
            if w > st.W_tot:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-3:
                break
        lam = float(np.exp(hi))
        _, k = used(lam)
        return lam, lev[rows, k]

    def _band_lp(self, lam_hint, cols_hint, fill_rounds):
        """True when done; else None, or ``(λ, levels)`` to centre another band on."""
        st = self.st
        L, n, rows, W_tot = st.L, st.L - 1, st.rows, st.W_tot
        c0 = self._predict(lam_hint, 0.0, cols_hint)
        B = 2 * _BAND + 2
        b0 = np.clip(c0 - _BAND - 1, 0, L - B)
        lev = b0[:, None] + np.arange(B)[None, :]
        levc = np.maximum(lev, st.base[:, None]) if st.has_low else lev
        Wb = st.problem.uplink.least_bandwidth_hz(st.bits_lev[0, levc], self.tau)     # (M, B)
        Fb = st.WF_flat[st.WF_off[:, None] + lev]
        with np.errstate(invalid="ignore", divide="ignore"):
            R = np.diff(Fb, axis=1) / np.diff(Wb, axis=1)
        R[~np.isfinite(Wb[:, 1:]) | np.isnan(R)] = -1.0
        if st.has_low:
            R[lev[:, :-1] < st.base[:, None]] = np.inf

        def g(lam):
            k = np.count_nonzero(R > lam, axis=1)
            return W_tot - float(np.sum(Wb[rows, k])), k

        # bracket λ* from the hint (steps x4 in log λ), then regula falsi (Illinois) until few
        # increments lie between the ends; those are sorted and taken greedily
        gh, kh = g(lam_hint)
        x0, step = np.log(lam_hint), 1e-3
        if gh >= 0:
            hi_, lo_ = (x0, gh, kh), None
        else:
            lo_, hi_ = (x0, gh, kh), None
        for _ in range(8):                   # (up to a factor e^5 in λ)
            if lo_ is not None and hi_ is not None:
                break
            x = (hi_[0] - step) if lo_ is None else (lo_[0] + step)
            gx, kx = g(float(np.exp(x)))
            if gx >= 0:
                hi_ = (x, gx, kx)
            else:
                lo_ = (x, gx, kx)
            step *= 4
        if lo_ is None or hi_ is None:       # the bands do not hold λ*: per-device searches
            return None
        side = 0
        for _ in range(100):
            if int(np.sum(lo_[2] - hi_[2])) <= max(_FINAL, st.M // 4):
                break
            (xl, vl, _), (xh, vh, _) = lo_, hi_
            wl, wh = 0.5 ** max(-side - 1, 0), 0.5 ** max(side - 1, 0)
            xm = (xl * vh * wh - xh * vl * wl) / (vh * wh - vl * wl) if vh > vl else 0.5 * (xl + xh)
            if not (xl + 0.02 * (xh - xl) < xm < xh - 0.02 * (xh - xl)):
                xm = 0.5 * (xl + xh)
            gm, km = g(float(np.exp(xm)))
            if gm >= 0:
                hi_, side = (xm, gm, km), (side + 1 if side > 0 else 1)
            else:
                lo_, side = (xm, gm, km), (side - 1 if side < 0 else -1)
        k_hi, k_lo = hi_[2], lo_[2]
        lam_star = float(np.exp(hi_[0]))
        cnt = k_lo - k_hi
        k_take = k_hi.copy()
        if cnt.sum():
            dev = np.repeat(rows, cnt)
            jj = np.repeat(k_hi - np.cumsum(cnt) + cnt, cnt) + np.arange(dev.size)
            rr = R[dev, jj]
            dw = Wb[dev, jj + 1] - Wb[dev, jj]
            order = np.lexsort((jj, -rr))
            cum = np.cumsum(dw[order])
            slack = W_tot - float(np.sum(Wb[rows, k_hi]))
            k = int(np.searchsorted(cum, slack, side="right"))
            if k < dev.size:
                lam_star = float(rr[order[k]])
            np.add.at(k_take, dev[order[:k]], 1)
        lam_star = max(lam_star, 0.0)
        k_star = np.count_nonzero(R > lam_star, axis=1)
        # λ*'s levels must be strictly inside the bands (else a device's best level may lie
        # outside: the per-device searches take over)
        top = b0 + B - 1
        if np.any((k_star == 0) & (b0 > 0)) or np.any((k_star == B - 1) & (top < n)) or \
                np.any((k_take == B - 1) & (top < n)):
            return (lam_star, b0 + k_star) if lam_star > 0 else None
        self.lam = lam_star
        cols = b0 + k_take
        self.lp_cols = cols
        self._last[None] = cols
        c_star = Wb[rows, k_star]
        val = lam_star * W_tot + float(np.sum(Fb[rows, k_star])) - lam_star * float(np.sum(c_star))
        self._phi_memo[None] = (lam_star, False, (val, W_tot - float(np.sum(c_star)), b0 + k_star))
        self.lp_value = val
        self._keep_integer(cols, fill_rounds)
        return True

    def _after_choose(self, key, verified, cols):
        # the costs at the chosen levels: from the search's first computation where the level
        # was resolved there and stayed, computed for the others (kept for cost_cols / w_at)
        j0, cols0, known, rest = verified
        got = self._stash
        self._costs = None
        if got is None or got[0] is not j0:
            return
        w = got[1]
        pos = np.where(known, cols0 - j0, 0)
        costs = np.take_along_axis(w, pos[:, None], axis=1)[:, 0]
        have = known.copy()
        kept = self._kept
        if rest is not None and kept is not None and kept[0] is rest[1]:
            ri, jr = rest                      # the second check's costs at jr .. jr+2
            costs[ri] = np.take_along_axis(kept[1], (cols0[ri] - jr)[:, None], axis=1)[:, 0]
            have[ri] = True
        moved = np.flatnonzero((cols != cols0) | ~have)
        if moved.size:
            d = self.offset(key)
            c = self.w_at(moved, cols[moved])
            costs[moved] = c + d * self.g_at(moved, cols[moved], c) if d else c
        self._costs = (key, cols, costs)

    def row_costs(self, rows, d: float):
        st = self.st
        lev = np.maximum(np.arange(st.L)[None, :], st.base[rows][:, None])
        up = st.problem.uplink
        w = up.least_bandwidth_hz(st.bits_lev[0, lev], self.tau, rows=rows)
        if not d:
            return w
        return w + d * (-up.least_bandwidth_slope(self.tau, w, rows=rows) * (1 - 2.5e-7))

    def _ratios_from(self, idx, j, d, k, keep=False):
        """Increment ratios at j, ..., j + k - 1 of rows ``idx`` ((n, k); the table conventions),
        from one computation of the costs at the k + 1 levels j .. j + k (kept with ``keep``)."""
        st = self.st
        up = st.problem.uplink
        rows = None if idx is st.rows else idx          # (all devices: slices, no gathers)
        jj = np.reshape(j, (-1, 1)) + np.arange(k + 1)[None, :]
        lev = np.maximum(jj, st.base[idx][:, None]) if st.has_low else jj
        w = up.least_bandwidth_hz(st.bits_lev[0, lev], self.tau, rows=rows)         # (n, k+1)
        if d:
            w += d * (1 - 2.5e-7) * -up.least_bandwidth_slope(self.tau, w, rows=rows)
        if rows is None:
            self._stash = (j, w)                        # the costs, for _after_choose
        if keep:
            self._kept = (j, w)
        fo = st.WF_off[idx][:, None] + jj
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.diff(st.WF_flat[fo], axis=1)
            r /= np.diff(w, axis=1)
        if not np.isfinite(w[:, -1]).all() or np.isnan(r).any():   # (W increases in K)
            r[~np.isfinite(w[:, 1:]) | np.isnan(r)] = -1.0
        if st.has_low:
            r[jj[:, :-1] < st.base[idx][:, None]] = np.inf
        return r

    def _ratio(self, idx, j, d):
        return self._ratios_from(idx, j, d, 1)[:, 0]


    def ratios(self, a: float | None = None):
        if a is not None and a > self.tau:
            raise ValueError("costs right of τ need full ratio tables (small problems)")
        return None, self.st.bad_rows


def new_node(st: Static, tau: float, slopes: bool = True) -> Node:
    """The knapsack at τ: a :class:`FreeNode` for large problems (``st.free``), else a
    :class:`Node` with tables."""
    return (FreeNode if st.free else Node)(st, tau, slopes=slopes)


class ExactResult:
    """Outcome of :func:`exact_integer_step`: ``bound`` ≥ every integer value at τ (or ≤ the
    target when ``beaten`` is False), ``value``/``cols`` the best integer solution found."""

    def __init__(self, bound, value, cols, complete, nodes, core):
        self.bound, self.value, self.cols = bound, value, cols
        self.complete, self.nodes, self.core = complete, nodes, core


def exact_integer_step(node: Node, target: float, rel_gap: float = 0.0, max_nodes: int = 20_000,
                       max_options: int = 2_000_000) -> ExactResult:
    """The integer knapsack at ``node.tau``, solved down to ``target`` within ``rel_gap``.

    With λ the LP price and ``φ_m(j) = F_m(j) − λ C_m(j)``, every integer solution has value
    ``Σ F ≤ λ W_tot + Σ φ_m(K_m) = U − Σ_m loss_m(K_m)`` (U the Lagrangian bound,
    ``loss = max φ − φ ≥ 0``), so a solution worth more than ``T = max(target, incumbent)`` uses
    only levels with ``loss < U − T`` (reduced-cost fixing). Devices left with one level are fixed;
    a best-first branch and bound on the fractional device over the others (the core; LP bound
    at every node) finds the best solution above T, or shows that none is more than ``rel_gap``
    better than ``max(T, best found)``.

    Returns an :class:`ExactResult` whose ``bound`` is always a valid upper bound on the integer
    optimum at τ (``min(U, open bounds)``, at least T), ``value``/``cols`` the best integer
    solution (the Lagrangian + fill one if nothing better was found) and ``complete`` whether the
    bound is within ``rel_gap`` of ``max(T, value)`` (False when the node limit cut it short).
    """
    st = node.st
    lam = float(node.lam)
    U, _, cols_star = node.phi(lam, None, exact=True)
    U = U * (1 + 1e-12) + 1e-300
    inc_cols = node.int_cols.copy()
    inc_val = node.int_value
    T = max(float(target), inc_val)
    if U <= T:
        return ExactResult(T, inc_val, inc_cols, True, 0, 0)
    delta = U - T
    # options per device: levels with loss < delta. For concave rows they form an interval around
    # the maximizer; its hull is kept otherwise (a superset: still exact). Chunked over rows.
    fixed_cols = cols_star.copy()
    j = np.arange(st.L)[None, :]
    c_rows, c_lo, c_hi = [], [], []
    n_opts = 0
    for r0, r1 in st.chunks():
        C = node.row_costs(np.arange(r0, r1), 0.0)
        with np.errstate(invalid="ignore"):
            phi = st.F[r0:r1] - lam * C
        phi[~np.isfinite(C) | (j < st.base[r0:r1, None])] = -np.inf
        loss = phi.max(axis=1)[:, None] - phi
        ok = loss < delta
        first = np.argmax(ok, axis=1)
        last = st.L - 1 - np.argmax(ok[:, ::-1], axis=1)
        multi = last > first
        fixed_cols[r0:r1][~multi] = first[~multi]
        if multi.any():
            c_rows.append(r0 + np.flatnonzero(multi))
            c_lo.append(first[multi])
            c_hi.append(last[multi])
            n_opts += int(np.sum(last[multi] - first[multi] + 1))
            if n_opts > max_options:
                return ExactResult(U, inc_val, inc_cols, False, 0, sum(len(x) for x in c_rows))
    core_rows = np.concatenate(c_rows) if c_rows else np.zeros(0, dtype=np.intp)
    fixed_mask = np.ones(st.M, dtype=bool)
    fixed_mask[core_rows] = False
    fr = np.flatnonzero(fixed_mask)
    fixed_cost = float(np.sum(node.w_at(fr, fixed_cols[fr])))
    fixed_val = float(np.sum(st.F[fr, fixed_cols[fr]]))
    core = core_rows.size
    if core == 0:
        val = fixed_val
        if fixed_cost <= st.W_tot and val > T:
            return ExactResult(val, val, fixed_cols, True, 1, 0)
        return ExactResult(T, inc_val, inc_cols, True, 1, 0)
    lo0 = np.concatenate(c_lo).astype(np.intp)
    hi0 = np.concatenate(c_hi).astype(np.intp)
    val, lev, nodes, cbound = _core_bb(node, core_rows, lo0, hi0, st.W_tot - fixed_cost,
                                       T - fixed_val, max_nodes, rel_gap * abs(T))
    bound = min(U, fixed_val + cbound)
    complete = bound <= max(T, fixed_val + val) * (1 + rel_gap) + 1e-12 * abs(T)
    if lev is None:                                       # nothing beats the target
        return ExactResult(bound, inc_val, inc_cols, complete, nodes, core)
    cols = fixed_cols.copy()
    cols[core_rows] = lev
    return ExactResult(bound, fixed_val + val, cols, complete, nodes, core)


def _core_bb(node, rows, lo0, hi0, budget, target, max_nodes, abs_gap):
    """Best-first branch and bound on the fractional device for the core knapsack: devices
    ``rows`` with levels (columns) ``lo0..hi0`` and budget ``budget``. The bound of a node is its
    LP (greedy over the devices' increments, sorted by ratio once, within the node's level
    bounds); the node's fractional device is branched on (``K ≤ k`` / ``K ≥ k + 1``). Stops when
    the largest open bound is within ``abs_gap`` of ``max(best found, target)``.

    Returns ``(value, levels, nodes, bound)``: the best value found above ``target`` (levels None
    if none) and a valid upper bound on the core optimum, or on ``target`` if nothing beats it
    (``max(open bounds, value, target)``)."""
    import heapq

    st = node.st
    n = rows.size
    Wrow = node.row_costs(rows, 0.0)
    Frow = st.F[rows]
    cnt = hi0 - lo0
    dev = np.repeat(np.arange(n), cnt)
    jj = np.repeat(lo0 - np.cumsum(cnt) + cnt, cnt) + np.arange(dev.size)
    dc = Wrow[dev, jj + 1] - Wrow[dev, jj]
    df = Frow[dev, jj + 1] - Frow[dev, jj]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dc > 0, df / dc, np.inf)
    order = np.lexsort((jj, -ratio))
    dev, jj, dc, df = dev[order], jj[order], dc[order], df[order]
    ar = np.arange(n)
    best_val = target
    best_lev = None

    def relax(lo, hi):
        """LP bound, integer solution (its value or -inf), fractional (device, column) or None."""
        base_c = float(np.sum(Wrow[ar, lo]))
        if base_c > budget:
            return -np.inf, None, -np.inf, None
        base_f = float(np.sum(Frow[ar, lo]))
        act = (jj >= lo[dev]) & (jj < hi[dev])
        cum = np.cumsum(np.where(act, dc, 0.0))
        slack = budget - base_c
        p = int(np.searchsorted(cum, slack, side="right"))
        taken = act.copy()
        taken[p:] = False
        lp = base_f + float(np.sum(df[taken]))
        frac = None
        if p < dev.size and act[p]:
            prev = cum[p - 1] if p > 0 else 0.0
            lp += df[p] * max(slack - prev, 0.0) / dc[p]
            frac = (dev[p], jj[p])
        lev = hi.copy()                      # per device: up to its first increment not taken
        nt = act & ~taken
        np.minimum.at(lev, dev[nt], jj[nt])
        val = float(np.sum(Frow[ar, lev]))
        if float(np.sum(Wrow[ar, lev])) > budget:
            val = -np.inf
        return lp, lev, val, frac

    heap = []
    tie = 0
    lp, lev, val, frac = relax(lo0, hi0)
    nodes = 1
    if val > best_val:
        best_val, best_lev = val, lev
    if frac is not None:
        heapq.heappush(heap, (-lp, tie, lo0, hi0, frac))
    while heap:
        top = -heap[0][0]
        if top <= best_val + abs_gap:
            break
        if nodes >= max_nodes:
            break
        negl, _, lo, hi, (d, jf) = heapq.heappop(heap)
        for clo, chi in ((lo, hi.copy()), (lo.copy(), hi)):
            if chi is not hi:
                chi[d] = jf                    # K_d ≤ level jf
            else:
                clo[d] = jf + 1                # K_d ≥ level jf + 1
            lp, lev, val, frac = relax(clo, chi)
            nodes += 1
            if val > best_val:
                best_val, best_lev = val, lev
            if frac is not None and lp > best_val + 1e-12 * abs(best_val):
                tie += 1
                heapq.heappush(heap, (-min(lp, -negl), tie, clo, chi, frac))
    bound = max(-heap[0][0] if heap else -np.inf, best_val, target)
    return best_val, best_lev, nodes, bound


def knapsack_token_step(problem, tau: float, scales=(0.9, 0.95, 0.98, 1.0, 1.02, 1.05, 1.1)):
    """Token step of ``alternating(token_step="knapsack")``: re-choose every device's tokens jointly.

    For straggler times ``τ · s`` (s in ``scales``) solve the knapsack at that τ (Lagrangian + fill
    solution, :meth:`Node.lp`: chunked tables and a per-device price search,
    linear in M), give each token vector the exact resource step, and return the best
    ``(tokens, bandwidth, power, ste)``; None if nothing fits. Unlike the per-device closed form it
    moves bandwidth between devices, which is what the block-coordinate steps cannot do.
    """
    static = Static(problem)
    rows = static.rows
    best = None
    seen = set()
    hint = (None, None)
    for s in scales:
        t = float(min(tau * s, problem.tau_max))
        nd = new_node(static, t, slopes=False)
        if not nd.feasible:
            continue
        nd.lp(*hint)
        hint = (nd.lam, nd.lp_cols)
        tokens = nd.tokens
        key = tokens.tobytes()
        del nd
        if key in seen:
            continue
        seen.add(key)
        out = polish(problem, tokens)
        if out is None:
            continue
        w, p, t_act = out
        ste = float(np.sum(problem.WF[rows, tokens])) / t_act
        if best is None or ste > best[3]:
            best = (tokens.copy(), w, p, ste)
    return best
