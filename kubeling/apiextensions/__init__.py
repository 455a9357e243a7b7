"""CustomResourceDefinitions: serving, structural schemas, CEL rules, printer columns, conversion.

``wiring.install(server)`` connects this package to the API server.
"""
