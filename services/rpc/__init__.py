"""The gRPC service; its Python code is generated from proto/ by playground.codegen."""
