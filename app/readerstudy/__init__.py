"""The reader study's pure parts: the reading plan (``design``), the reading clock (``timing``)
and the statistics (``stats``, ``mrmc``). No database and no HTTP: app.web.services.reader_studies
stores what these compute."""
