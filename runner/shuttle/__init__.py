"""Shuttle: one command from a fresh Debian or Ubuntu host to a hardened, backed-up OpenEMR."""
