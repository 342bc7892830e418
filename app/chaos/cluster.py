"""A three-node KRaft cluster (each node broker and controller) for the failover scenario.

It is the stack's own cluster (``playground up --brokers 3``): the components ``kafka``,
``kafka-2`` and ``kafka-3`` of :func:`...app.stack.kafka_components`, configured, formatted and
run by ``core.kafka_native``, here on free ports in the scenario's folder. So each node has the
stack's PID file, log and health check, and is started, SIGKILLed and stopped like any
component. The nodes start together: a lone node has no quorum, so it cannot become healthy.
"""

from __future__ import annotations

from dataflow_playground.app import stack
from dataflow_playground.app.chaos.env import ChaosEnv, ChaosError
from dataflow_playground.app.stack import free_ports


class Cluster:
    """The stack's three Kafka nodes on free ports under ``env``'s folder.

    Switches ``env`` to cluster mode (``brokers=3``), so that what it starts afterwards
    (a restarted node, services) talks to all three.
    """

    def __init__(self, env: ChaosEnv, size: int = 3) -> None:
        if size != 3:
            raise ChaosError(f"the native cluster has 3 nodes, not {size}")
        self.env, self.size = env, size
        s = env.settings
        taken = {s.kafka_port, s.kafka_controller_port, s.rest_port, s.rpc_port, s.dashboard_port}
        k2, c2, k3, c3 = [p for p in free_ports(4 + len(taken), s.host) if p not in taken][:4]
        env.settings = s.model_validate({**s.model_dump(), "brokers": 3, "kafka_2_port": k2,
                                         "kafka_2_controller_port": c2, "kafka_3_port": k3,
                                         "kafka_3_controller_port": c3})
        self.nodes = stack.kafka_components(env.settings)
        self.node_ids = [1, 2, 3]
        self.bootstrap = env.settings.bootstrap_servers

    def start(self) -> None:
        """Start the three nodes together and wait until each one's broker is live."""
        self.env.start_together(self.nodes)
