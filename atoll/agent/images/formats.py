"""Recognise an archive's format and read its plans: ``docker save`` first, as ``docker load`` does.

Docker 25+ writes both manifest.json and an OCI index; manifest.json carries the full tags, so it wins.
"""

from __future__ import annotations

from atoll.agent.images.dockersave import docker_save_plans
from atoll.agent.images.ocilayout import oci_plans
from atoll.agent.images.plan import ImagePlan, merge
from atoll.agent.images.sources import BlobSource
from atoll.model.errors import BadImage


def read_plans(src: BlobSource) -> list[ImagePlan]:
    if src.exists("manifest.json"):
        plans = docker_save_plans(src)
    elif src.exists("index.json") or src.exists("oci-layout"):
        plans = oci_plans(src)
    else:
        raise BadImage(
            f"{src.label}: neither a docker save archive (manifest.json) nor an OCI image layout (index.json)"
        )
    return merge(plans)
