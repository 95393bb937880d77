"""The agent: converges one host to the state the controller wants.

It never imports the controller. It sees the controller only through ``atoll.model.ports.ControlPlane``.
"""
