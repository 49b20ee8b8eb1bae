"""Printable QR posters for venues (PNG and SVG) and personal QR images, made with ``qrcode``.

The poster is A4 portrait: a bilingual instruction line, the venue's name and address, the QR
code (error correction M, large enough to scan from a metre away when printed at 15 cm or more,
as Vietnam's guidance asked), and the venue id in small print. The SVG is vector (qrcode's SVG
path factory) and scales to any print size; the PNG is 150 dpi.

Venue names are user input: in SVG they are XML-escaped, in PNG drawn as text. Rendering is CPU
work (tens of milliseconds for the PNG); the API runs it in a worker thread and caches results.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from functools import lru_cache
from xml.sax.saxutils import escape

import qrcode
import qrcode.constants
import qrcode.image.svg
from PIL import Image, ImageDraw, ImageFont

__all__ = ["person_qr_png", "venue_poster_png", "venue_poster_svg"]

_INSTRUCTION = "Quét mã QR khi vào và ra · Scan when you enter and leave"
_A4_PX = (1240, 1754)  # 150 dpi
_MARGIN = 90

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _qr(payload: str) -> qrcode.QRCode:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(payload)
    code.make(fit=True)
    return code


@lru_cache(maxsize=16)
def _font(size: int, bold: bool = False) -> Font:
    # DejaVu covers Vietnamese diacritics; Pillow finds it by name in the system font folders.
    for name in ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf", "DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


def _wrap_words(text: str, fits: Callable[[str], bool]) -> list[str]:
    """``text`` broken into at most four lines, a word at a time while a line ``fits`` (a
    word too long for a line stands alone on its own)."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if not current or fits(candidate):
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    return lines[:4]


def _wrap(text: str, font: Font, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    return _wrap_words(text, lambda line: draw.textlength(line, font=font) <= width)


def venue_poster_png(name: str, address: str, venue_id: str, payload: str) -> bytes:
    """The venue's A4 poster as PNG bytes."""
    page = Image.new("RGB", _A4_PX, "white")
    draw = ImageDraw.Draw(page)
    width = _A4_PX[0] - 2 * _MARGIN
    y = _MARGIN
    draw.rectangle((0, 0, _A4_PX[0], 60), fill=(0, 102, 153))
    for text, font, gap in (
        (_INSTRUCTION, _font(34), 20),
        (name, _font(64, bold=True), 16),
        (address, _font(36), 16),
    ):
        for line in _wrap(text, font, width, draw):
            draw.text((_A4_PX[0] // 2, y), line, font=font, fill="black", anchor="ma")
            y += int(font.size * 1.25) if isinstance(font, ImageFont.FreeTypeFont) else 40
        y += gap
    qr_image = _qr(payload).make_image().get_image().convert("RGB")
    room = _A4_PX[1] - y - 2 * _MARGIN
    side = min(width, room)
    qr_image = qr_image.resize((side, side), Image.Resampling.NEAREST)
    page.paste(qr_image, ((_A4_PX[0] - side) // 2, y + (room - side) // 2))
    draw.text(
        (_A4_PX[0] // 2, _A4_PX[1] - _MARGIN),
        f"covidtech · {venue_id}",
        font=_font(24),
        fill=(90, 90, 90),
        anchor="md",
    )
    out = io.BytesIO()
    page.save(out, format="PNG", optimize=False, dpi=(150, 150))
    return out.getvalue()


_SVG_OPEN = re.compile(r"<svg\b[^>]*>")
_VIEWBOX = re.compile(r'viewBox="([^"]*)"')


def _svg_lines(text: str, max_chars: int) -> list[str]:
    return _wrap_words(text, lambda line: len(line) <= max_chars)


def venue_poster_svg(name: str, address: str, venue_id: str, payload: str) -> bytes:
    """The venue's A4 poster as an SVG document (millimetre units)."""
    qr_svg = _qr(payload).make_image(image_factory=qrcode.image.svg.SvgPathImage)
    inner = qr_svg.to_string(encoding="unicode")
    inner = inner[inner.index("<svg") :]
    view_box = _VIEWBOX.search(inner)
    opening = (
        f'<svg x="30" y="{{y}}" width="150" height="150" viewBox="{view_box.group(1)}">'
        if view_box
        else '<svg x="30" y="{y}" width="150" height="150">'
    )
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<svg xmlns="http://www.w3.org/2000/svg" width="210mm" height="297mm" '
        'viewBox="0 0 210 297" font-family="DejaVu Sans, Arial, sans-serif">',
        f"<title>{escape(name)}</title>",
        '<rect width="210" height="297" fill="white"/>',
        '<rect width="210" height="10" fill="#006699"/>',
        f'<text x="105" y="22" font-size="6" text-anchor="middle">{escape(_INSTRUCTION)}</text>',
    ]
    y = 38.0
    for line in _svg_lines(name, 28):
        parts.append(
            f'<text x="105" y="{y:.1f}" font-size="11" font-weight="bold" '
            f'text-anchor="middle">{escape(line)}</text>'
        )
        y += 13
    for line in _svg_lines(address, 55):
        parts.append(
            f'<text x="105" y="{y:.1f}" font-size="6" text-anchor="middle">{escape(line)}</text>'
        )
        y += 8
    qr_y = max(y + 2, 80.0)
    parts.append(_SVG_OPEN.sub(opening.replace("{y}", f"{qr_y:.1f}"), inner, count=1))
    parts.append(
        f'<text x="105" y="287" font-size="4" fill="#5a5a5a" text-anchor="middle">'
        f"covidtech · {escape(venue_id)}</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts).encode("utf-8")


def person_qr_png(payload: str) -> bytes:
    """A person's QR code alone, as a small PNG (for the app or a printed card)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=6, border=4)
    code.add_data(payload)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().get_image().save(out, format="PNG")
    return out.getvalue()
