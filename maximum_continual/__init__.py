"""The client SDK (``MaximumContinual``, ``Tool``, ``MessageT``, ``predict``, ``update``).

Not built yet (issue: inference node and SDK). Apps can publish events today with
``producers.EventPublisher``.
"""

__all__: list[str] = []
