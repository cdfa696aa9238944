"""Column expressions that normalize registry values: dates, ages, phases, identifiers.

They are Spark Column builders, so normalization runs on the executors inside the same query as parsing.
"""
