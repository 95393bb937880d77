"""HTTP only: the native REST API (``/v1``). Routers decode requests, call one service, encode results."""
