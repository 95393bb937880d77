"""The OCI runtime driver: runc or crun, driven through their CLI, with no helper process per container.

Each container's process 1 is ``atoll-init`` (``init/atoll-init.c``), a tiny static binary bind-mounted
at ``/dev/.atoll-init``. It runs the workload as its child, appends the output to the instance's log file
(fd 3, CRI log format) and writes the exit status to the instance's exit file (fd 4). Both files are opened
by the agent and handed to the container through ``runc run -d --preserve-fds 2``; after that the agent
can die and restart at will: the container keeps running, its log keeps growing, and how it ended is on
disk when the agent comes back.

Modules, one concept each:

- ``initbin``: compiles ``atoll-init`` once per host.
- ``security``: capabilities, masked paths and the seccomp profile (Docker's defaults).
- ``rootpath``: path resolution inside an untrusted root filesystem.
- ``users``: ``user[:group]`` resolved against the image's ``/etc/passwd`` and ``/etc/group``.
- ``oci``: the OCI ``config.json`` and ``runc exec`` process documents.
- ``oci_runtime``: the async wrapper over the runtime's CLI, and runtime selection.
- ``exec``: processes started in running containers (``ExecProcess``).
- ``cgroups``: reading usage and OOM counters; removing leftovers.
- ``exitfile`` and ``logs``: reading what ``atoll-init`` wrote.
"""
