"""Python SDK for Atoll's native REST API.

``AtollAPI`` maps one method onto each endpoint and returns the wire models of ``atoll.schemas``::

    from atoll.client import AtollAPI
    from atoll.schemas import InstanceCreate

    with AtollAPI.from_env() as api:
        inst = api.create_instance(InstanceCreate(image="alpine", command=["echo", "hi"]))
        api.start_instance(inst.id)
        for stream, data in api.logs(inst.id, follow=True):
            ...
        print(api.wait_instance(inst.id).exit_code)
"""

from atoll.client.api import DEFAULT_PROJECT, DEFAULT_URL, AtollAPI, LogStream
from atoll.client.archive import estimate_tar_size, tar_directory
from atoll.client.errors import AtollConnectionError, AtollError
from atoll.client.exec import ExecSession
from atoll.client.framing import FrameDecoder, FramingError, encode_frame
from atoll.client.uploads import Progress, SupportsRead, UploadSource

__all__ = [
    "DEFAULT_PROJECT",
    "DEFAULT_URL",
    "AtollAPI",
    "AtollConnectionError",
    "AtollError",
    "ExecSession",
    "FrameDecoder",
    "FramingError",
    "LogStream",
    "Progress",
    "SupportsRead",
    "UploadSource",
    "encode_frame",
    "estimate_tar_size",
    "tar_directory",
]
