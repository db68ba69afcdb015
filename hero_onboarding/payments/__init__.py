"""Payment providers behind Protocols (payments.base), built for both daemons by providers.py."""
