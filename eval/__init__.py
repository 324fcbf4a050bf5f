"""The evaluation protocol, Top-K evaluators and report rendering (paper sections 4.4-4.5)."""
