"""Services: the REST (FastAPI) and RPC (gRPC) services."""
