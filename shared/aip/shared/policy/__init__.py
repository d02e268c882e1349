"""The AgentPolicy: its model, file rules, loader, and the engine that decides every message."""
