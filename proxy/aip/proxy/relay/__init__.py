"""The relay: what runs for every message in both directions (upstream: client to server,
downstream: server to client) and the session state both threads share.
"""
