"""Real documents, generated in the test: PDFs (fpdf2), DOCX (python-docx), PPTX (python-pptx).

Parsing tests, ingestion tests and the ingestion benchmark all need files as users upload them,
not text pretending to be a PDF; generating them keeps binary fixtures out of the repository
and lets each test plant exactly the facts it looks for.
"""

from __future__ import annotations

import io
import random
import zlib

from docx import Document
from fpdf import FPDF
from pptx import Presentation
from pptx.util import Inches

_VOCABULARY = (
    "archive ledger harbor signal meadow lantern copper orchard basalt compass granite timber "
    "vessel glacier canyon prairie quarry beacon market tunnel cipher falcon garden island "
    "journal kettle marble needle oyster pepper quiver ribbon saddle thistle umbrella velvet "
    "walnut yarrow zephyr anchor bramble cobalt dune ember fern grove hollow ivory juniper"
)
_WORDS = _VOCABULARY.split()


def filler_sentences(count: int, *, seed: int = 0) -> list[str]:
    """Deterministic nonsense sentences (6-16 words each), for bulk text."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 16))]
        sentences.append(" ".join(words).capitalize() + ".")
    return sentences


def filler_pages(
    pages: int, *, paragraphs: int = 4, sentences: int = 6, seed: int = 0
) -> list[str]:
    """Page texts of filler paragraphs (separated by blank lines)."""
    rng_seed = seed
    out = []
    for _ in range(pages):
        paras = []
        for _ in range(paragraphs):
            paras.append(" ".join(filler_sentences(sentences, seed=rng_seed)))
            rng_seed += 1
        out.append("\n\n".join(paras))
    return out


def make_pdf(pages: list[str]) -> bytes:
    """A PDF with one page per text; paragraphs (blank-line separated) are wrapped lines."""
    pdf = FPDF()
    pdf.set_auto_page_break(auto=False)
    pdf.set_font("Helvetica", size=10)
    for text in pages:
        pdf.add_page()
        for paragraph in text.split("\n\n"):
            pdf.multi_cell(0, 4.5, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    return bytes(pdf.output())


def make_pdf_lines(pages: list[list[str]]) -> bytes:
    """A PDF whose pages hold exactly these lines (so a test controls the line breaks)."""
    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _png(width: int, height: int) -> bytes:
    """A valid grey PNG, written by hand (no imaging library needed)."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = b"".join(
        b"\x00" + bytes((x * 7 + y * 3) % 256 for x in range(width)) for y in range(height)
    )
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def make_image_pdf(pages: int = 2) -> bytes:
    """A "scanned" PDF: every page is an image, there is no text layer."""
    pdf = FPDF()
    image = io.BytesIO(_png(120, 160))
    for _ in range(pages):
        pdf.add_page()
        image.seek(0)
        pdf.image(image, x=10, y=10, w=120)
    return bytes(pdf.output())


def make_docx(paragraphs: list[str], *, heading: str | None = None,
              table: list[list[str]] | None = None) -> bytes:  # fmt: skip
    document = Document()
    if heading:
        document.add_heading(heading, level=1)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pptx(slides: list[tuple[str, str]]) -> bytes:
    """A deck with one (title, body) slide per entry."""
    deck = Presentation()
    layout = deck.slide_layouts[1]  # "Title and Content"
    for title, body in slides:
        slide = deck.slides.add_slide(layout)
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
    # A text box outside the placeholders, as decks often have.
    extra = deck.slides[0].shapes.add_textbox(Inches(1), Inches(6), Inches(4), Inches(1))
    extra.text_frame.text = "Footnote box"
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()
