"""Wire formats of the HTTP API: request and response schemas and their codecs (no HTTP)."""
