"""Per-kind row printers for server-side tables (pkg/printers/internalversion upstream).

Each module holds the printers of one area; ``registry.PRINTERS`` maps (group, kind)
to column definitions and a row function. ``kubeling.api.tables`` builds the Table.
"""
