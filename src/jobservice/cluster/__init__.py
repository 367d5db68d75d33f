"""Many hosts: stateless jobd fronts and one agent per host, over a NATS JetStream cluster.

`front.ClusterFront` is a second implementation of `core.backend.JobBackend` (the first is
`JobCoordinator`): `jobd serve --nats` serves the same gRPC API over it. `agent.Agent` runs jobs
on its host through a `JobCoordinator` and publishes their records and output. `natsconf`
writes the servers' configuration. docs/cluster.md explains the layout, the failure model and
the security model. Nothing here imports the API or the CLI, and the core never imports this
package. Submodules are imported by name: `natsconf` and `errors` do not need nats-py.
"""
