"""The audit contract both processes agree on: the record builder, its JSON Schema, and the spool
file format.
"""
