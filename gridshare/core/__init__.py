"""Shared domain code every gridshare component imports: settings, errors, payloads, schema,
database and chain access, and the local stack."""
