"""Persistence: tables, engines and sessions, migrations, the attachment blob store."""
