"""The engine: the targets (a subject, a selection) behind one protocol, locating, planning, carrying
out and verifying erasures and the special flows, discovery and sweeps through the connectors'
public methods, and the run service the CLI and Airflow share.
"""
