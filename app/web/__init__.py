"""The web application: settings, database, services, JSON API, worker and CLI.

Routes are a thin layer over the service modules; HTML pages live in
``app.web.pages`` and render with ``app.web.core.templating.templates``.
"""
