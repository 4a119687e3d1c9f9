"""SFLAM methods: BCD (:mod:`.bcd`) with its power and matching blocks, exact methods for special
cases (:mod:`.exact`), the MILP (:mod:`.milp`) and the baselines (:mod:`.baselines`)."""
