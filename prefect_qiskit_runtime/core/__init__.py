"""The core layer: wire formats, data models and exceptions shared by every other layer.

Nothing here imports the client, Prefect or the server, so every other layer can depend on it.
"""
