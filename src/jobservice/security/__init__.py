"""Strict mutual TLS, the development PKI, caller identity and role-based authorization."""
