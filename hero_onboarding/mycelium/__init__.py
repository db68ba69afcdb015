"""Mycelium identity: addresses, key proofs, and sending a node's messages.

Shared by the public daemon (login) and the CLI (`login-proof`); it knows nothing of either.
"""
