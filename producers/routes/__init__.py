"""HTTP routes of the ingest API, one module per area; ``producers/app.py`` assembles them."""
