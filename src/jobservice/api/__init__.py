"""The gRPC API: the client connection, the jobd server, and its translation layer over the core."""

from jobservice.api._h2 import quiet_data_frame_repr

# Here, so that every user of the API (jobd, jobctl, benchmarks, tests) streams without it.
quiet_data_frame_repr()
