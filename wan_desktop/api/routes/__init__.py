"""The ``/api/v1`` routers, one module per area of CONTRACT.md."""
