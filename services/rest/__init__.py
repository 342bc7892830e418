"""The REST service (FastAPI): one router per resource."""
