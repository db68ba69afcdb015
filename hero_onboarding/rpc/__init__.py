"""JSON-RPC 2.0 over HTTP on a Unix socket (the Hero socket spec), server and client side.

The method registry describes each method once; dispatch, parameter validation and the
OpenRPC document all come from it, so the document can never drift from what answers.
"""
