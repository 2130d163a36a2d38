"""The live status page: static files (``static/``), the JSON API and the last-values tap."""
