"""The proxy's end of the control plane: the interface the relay asks through, and the ZeroMQ
client of the approver behind it.
"""
