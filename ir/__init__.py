"""waferc's IR: tensor types, the op registry, graphs, kernels, placements and WKL programs as data.

Imports neither torch nor OR-Tools: passes/ and backends/ share what they need through here.
"""
