"""``playground chaos``: fault scenarios under load, each bounded in time, with loss accounting.

One module per scenario (``sink_kill``, ``broker_restart``, ``cluster_failover``,
``worker_kill``, ``rest_kill``, ``poison``); each starts what it needs in its own temporary
data folder on free ports (:mod:`.env`), injects its fault, and returns an
:class:`~.accounting.Outcome`. :mod:`.runner` runs them and writes ``results/chaos.*``.
"""
