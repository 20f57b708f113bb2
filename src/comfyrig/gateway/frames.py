"""ComfyUI's binary websocket frames (server.py ``send_bytes``, protocol.py ``BinaryEventTypes``).

Every frame starts with a big-endian 4-byte event type:

- 1 PREVIEW_IMAGE: a 4-byte image type (1 JPEG, 2 PNG), then the image. Also how
  ``SaveImageWebsocket`` delivers its images (sent as an unencoded preview).
- 3 TEXT: a 4-byte length, the node id, then UTF-8 text.
- 4 PREVIEW_IMAGE_WITH_METADATA: a 4-byte length, JSON metadata (``prompt_id``,
  ``node_id``, ``display_node_id``, ``parent_node_id``, ``real_node_id``,
  ``image_type`` as a MIME type), then the image. Sent only to clients that
  announced ``supports_preview_metadata`` in their ``feature_flags`` message.

The gateway announces that flag to every worker, so previews arrive with their
prompt id, and turns them back into type 1 for a client that did not announce it.
"""

from __future__ import annotations

import json
import struct
from typing import Any

__all__ = [
    "PREVIEW_IMAGE",
    "PREVIEW_IMAGE_WITH_METADATA",
    "TEXT",
    "frame_type",
    "legacy_preview",
    "preview_metadata",
]

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
_IMAGE_TYPES = {"image/jpeg": 1, "image/png": 2}


def frame_type(frame: bytes) -> int | None:
    return struct.unpack_from(">I", frame)[0] if len(frame) >= 4 else None


def preview_metadata(frame: bytes) -> dict[str, Any] | None:
    """The metadata of a type-4 frame; None for another type or a malformed one."""
    if frame_type(frame) != PREVIEW_IMAGE_WITH_METADATA or len(frame) < 8:
        return None
    (length,) = struct.unpack_from(">I", frame, 4)
    if 8 + length > len(frame):
        return None
    try:
        metadata = json.loads(frame[8 : 8 + length])
    except (ValueError, UnicodeDecodeError):
        return None
    return metadata if isinstance(metadata, dict) else None


def legacy_preview(frame: bytes) -> bytes | None:
    """A type-4 frame as the type-1 frame ComfyUI sends a client without the feature flag
    (same image bytes); None when ``frame`` is not a well-formed type-4 frame."""
    metadata = preview_metadata(frame)
    if metadata is None:
        return None
    (length,) = struct.unpack_from(">I", frame, 4)
    image_type = _IMAGE_TYPES.get(str(metadata.get("image_type")), 1)
    return struct.pack(">II", PREVIEW_IMAGE, image_type) + frame[8 + length :]
