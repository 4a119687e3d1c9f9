"""STE methods: the alternating algorithm and its ablations, the knapsack at a fixed straggler time,
the certified branch and bound on τ shared by ``global`` and ``milp`` (:mod:`.taubb`), and the
references (SCIP, brute force)."""
