"""Fill the attendees ports into a copy of mesh.yaml for one demo run.

run.py starts the Attendee instances on free ports (``--port 0``) and only then
writes the config the control plane reads, so no fixed port can be taken.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml


def render_mesh_config(template: Path, output: Path, attendee_ports: Sequence[int]) -> None:
    """Copy ``template`` to ``output`` with the attendees endpoints on ``attendee_ports``."""
    documents = [doc for doc in yaml.safe_load_all(template.read_text()) if doc is not None]
    attendees = [doc for doc in documents if _is_service_entry_for(doc, "attendees")]
    if len(attendees) != 1:
        raise ValueError(f"{template}: expected one ServiceEntry for host 'attendees'")
    endpoints: list[dict[str, Any]] = attendees[0]["spec"].get("endpoints", [])
    if len(endpoints) != len(attendee_ports):
        raise ValueError(
            f"{template}: the attendees ServiceEntry lists {len(endpoints)} endpoints, "
            f"the demo runs {len(attendee_ports)} instances"
        )
    for endpoint, port in zip(endpoints, attendee_ports, strict=True):
        endpoint["ports"] = {name: port for name in endpoint.get("ports", {"http": port})}
    output.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def _is_service_entry_for(document: Any, host: str) -> bool:
    return (
        isinstance(document, dict)
        and document.get("kind") == "ServiceEntry"
        and host in document.get("spec", {}).get("hosts", [])
    )
