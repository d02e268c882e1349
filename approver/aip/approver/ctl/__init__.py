"""``aipctl``: the user's command line (policy, audit, approver, config, doctor). The daemon never
imports it.
"""
