"""Plumbing the services and routes stand on: database, ORM models, migrations, storage,
passwords and signing, sessions, CSRF, request limits, paths and templates. No HTTP routes here."""
