"""Stand-ins for remote stores, for tests and the demo: a Gmail-compatible HTTP server and an FTP server.

Not for production use: they serve local folders to localhost only."""
