"""Layer 6: test your Polyn service against an in-memory NATS, per test.

- :class:`SandboxTransport`: the transport a sandboxed test's code gets from
  :func:`polyn.nats.transport_for`, made of three parts: :class:`MockNats` (messaging in memory:
  core NATS, request / reply, JetStream streams and durable pull consumers on trio's clock), a
  :class:`~polyn.testing.snapshot.SnapshotAdmin` (the real nats-server's stream and consumer
  *definitions*, read once, as the Polyn protocol requires) and the real server's key-value
  buckets.
- :class:`Sandbox`: the per-trio-run registry that maps each test's task (and the tasks beneath
  it, and tasks it allows) to its ``SandboxTransport``, plugged into
  :func:`polyn.nats.transport_for`. ``sandbox.config(...)`` points an App's config at the server
  the sandbox wraps, and ``sandbox.run(app)`` runs the App (``app.run()``, safe on virtual time).
- ``polyn.testing.plugin``: the pytest plugin (loaded through the ``pytest11`` entry point when
  polyn is installed): fixtures ``nats_server``, ``polyn_config``, ``polyn_schemas`` and
  ``polyn_sandbox``. It never switches the sandbox on by itself: only a test that requests
  ``polyn_sandbox`` is sandboxed.
- :func:`real_time`: pause a ``trio.testing.MockClock``'s autojump around your own calls to a
  real server in a test that runs on virtual time (the sandbox does this for its own calls).
- ``polyn.testing.strategies``: Hypothesis strategies for valid and invalid events (imported on
  its own, as it needs Hypothesis and hypothesis-jsonschema).

Production code never imports this package.
"""

from __future__ import annotations

from polyn.testing._real import real_time
from polyn.testing.mock_nats import MockNats
from polyn.testing.sandbox import DEADLETTER_PREFIX, Sandbox
from polyn.testing.sandbox_transport import SandboxTransport

__all__ = ["DEADLETTER_PREFIX", "MockNats", "Sandbox", "SandboxTransport", "real_time"]


# Reprs and tracebacks show the public path, as trio's names do.
for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) or callable(_value):
        if "._" in _value.__module__:
            _value.__module__ = __name__
del _name, _value
