"""Background work: the outbox worker, its senders (SMTP, webhook) and the periodic jobs.

Layer: uses ``models``, ``audit`` and ``operations``; nothing here is imported by a blueprint.
The outbox table in the application's own database is the source of truth.
"""
