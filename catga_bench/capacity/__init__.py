"""``catga-bench capacity``: the highest rate a system holds under its SLO, as a bracket
``[lo, hi)`` found by an MLRsearch-style search (RFC 9971), with the load generator's own
ceiling beside it (docs/capacity.md)."""
