"""Binary websocket event types (ComfyUI's protocol.py)."""


class BinaryEventTypes:
    PREVIEW_IMAGE = 1                  # 4-byte image type (1 JPEG, 2 PNG), then the image
    UNENCODED_PREVIEW_IMAGE = 2        # never on the wire: the server encodes it as PREVIEW_IMAGE
    TEXT = 3
    PREVIEW_IMAGE_WITH_METADATA = 4    # 4-byte metadata length, JSON metadata, then the image
