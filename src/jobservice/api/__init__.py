"""The gRPC API: the client connection, the jobd server, and its translation layer over the core."""
