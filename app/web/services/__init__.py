"""What the web app does, independent of HTTP: studies, uploads, diagnoses, users, audit, analysis.

Routes (app.web.api, app.web.pages) stay thin and call these; errors are app.web.errors.ServiceError.
"""
