"""The gRPC service; its messages and stubs are generated from ``core/proto/events.proto``."""
