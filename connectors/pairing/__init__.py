"""``twistd pairing-agent``: runs beside a pair's peer and joins its REST API to the other peer's.

See ``service.py`` for how, and README "Pairs" for the procedures it uses.
"""
