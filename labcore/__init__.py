"""The ground floor: what every layer of labctl stands on, importing nothing of the project above it.

`labcore.errors` holds the base of every expected failure; `labcore.net` the addresses and ports that the
cloud, host and sandbox layers all need to agree on.
"""
