"""The gateway's settings (``[gateway]``, ``[providers.NAME]``, ``[models.NAME]``), beside
the other services' so the configuration loads them without importing the runtime; the
gateway itself is `revoctl.runtime`."""
