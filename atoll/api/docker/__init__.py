"""The Docker Engine API, as a translation layer onto the native services.

``server`` speaks HTTP/1.1 (h11 on asyncio, because attach and exec hijack the connection), ``router``
maps (method, path) to handlers, and one module per Docker resource translates Docker's shapes to the
services' and back. Every request acts in the ``default`` project.
"""
