"""Connectors: WAMP clients of the router that bridge it to other systems.

Each connector is its own package with a ``tap.py`` (twistd options and
service maker) and shares the router connection, state directory and HTTP
helpers of :mod:`connectors.common`.
"""
