"""Media helpers: data URLs ↔ (media type, base64 payload), vendor media-type limits."""

from __future__ import annotations

from bytespike_edge.translate.ir import AudioPart, DocumentPart, ImagePart

# Anthropic accepts only these image types (reference §2.2, §9 item 14).
ANTHROPIC_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def parse_data_url(url: str) -> tuple[str, str] | None:
    """`data:<mime>;base64,<payload>` → (mime, payload); None for anything else."""
    if not url.startswith("data:"):
        return None
    header, comma, payload = url[5:].partition(",")
    if not comma or not header.endswith(";base64"):
        return None
    mime = header[: -len(";base64")].split(";", 1)[0].strip().lower()
    return (mime or "application/octet-stream"), payload


def data_url(media_type: str, data: str) -> str:
    return f"data:{media_type};base64,{data}"


def inline_part(media_type: str, data: str) -> ImagePart | DocumentPart | AudioPart:
    """An IR part for inline bytes of a given media type."""
    kind = media_type.lower()
    if kind.startswith("image/"):
        return ImagePart(media_type=kind, data=data)
    if kind.startswith("audio/"):
        return AudioPart(data=data, format=kind.split("/", 1)[1])
    return DocumentPart(media_type=kind, data=data)


def audio_media_type(fmt: str) -> str:
    return "audio/mpeg" if fmt in ("mp3", "mpeg") else f"audio/{fmt}"
