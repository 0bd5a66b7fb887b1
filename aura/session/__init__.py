"""Sessions: identity and progress, the event payloads, the snapshot, the log and its followers.

Reading order: :mod:`session` (what a session is) → :mod:`events` (what it says) →
:mod:`snapshot` (what is stored) → :mod:`store` (Redis) → :mod:`log_writer` (the one
writer) → :mod:`feed` (following a log) → :mod:`leases` (who drives what).
"""
