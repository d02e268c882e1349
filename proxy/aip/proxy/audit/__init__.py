"""The proxy's end of the audit flow: records of its own decisions, spooled first, then sent to the
approver in batches.
"""
