"""The admin daemon: operators inspect and correct billing over JSON-RPC on a Unix socket."""
