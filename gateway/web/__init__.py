"""HTTP surfaces: webhooks and durable ingest, web chat, Open311, the API, central callbacks,
the voice WebSocket and the operator console."""
