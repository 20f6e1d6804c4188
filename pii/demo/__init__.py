"""The demo world (fake people in a SQLite CRM, CSV exports, an FTP drop and a mailbox) for `lethe demo`
and the tests. Apart from the library: no library module imports it.
"""
