"""The web application, laid out by role (docs/architecture.md, "The web app, by role").

- ``app`` (create_app, error handlers), ``settings``, ``runtime``, ``deps`` (typed
  dependencies), ``errors`` (ServiceError), ``schemas`` (the API's and services' models);
- ``core/``: database, ORM models, migrations, storage, security, sessions, CSRF, limits, templates;
- ``services/``: what the app does, without HTTP (uploads, analysis worker, studies, diagnoses...);
- ``api/``: the JSON routes (health included); ``pages/``: the HTML routes.
"""
