"""The shared vocabulary of controller and agent: plain, immutable data with no I/O.

Both sides import this package and nothing of each other, which is what lets the agent run in the same
process as the controller today (``atoll up``) and on another host tomorrow.
"""
