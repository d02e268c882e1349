"""The single writer of the central audit log: hash chain, rotation, group commit, torn-tail
repair, and ingestion of proxy records and spools.
"""
