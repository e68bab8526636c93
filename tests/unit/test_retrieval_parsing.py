"""Parsing real files: what text comes out, where pages start, and which files fail how.

Every document is generated here (fpdf2, python-docx, python-pptx, hand-built zips), so each test
knows exactly what text it planted.
"""

from __future__ import annotations

import codecs
import io
import zipfile

import pytest
from pypdf import PdfReader, PdfWriter

from assistants.retrieval import (
    InvalidFile,
    ParsedDocument,
    UnsupportedFile,
    parse_document,
    parsing,
)
from tests.support.documents import (
    make_docx,
    make_image_pdf,
    make_pdf,
    make_pdf_lines,
    make_pptx,
)

# --- text and code ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    ["notes.txt", "README.md", "data.json", "main.py", "app.js", "x.ts", "lib.c", "a.cs",
     "b.cpp", "Main.java", "index.php", "tool.rb", "run.sh", "site.css", "paper.tex"],
)  # fmt: skip
def test_text_and_code_extensions_are_read_as_text(filename: str) -> None:
    source = "first line\r\nsecond line é ✓\n"
    doc = parse_document(source.encode("utf-8"), filename)
    assert doc.text == "first line\nsecond line é ✓\n"
    assert doc.page_starts == []


def test_utf8_bom_is_stripped() -> None:
    doc = parse_document(codecs.BOM_UTF8 + "café".encode(), "a.txt")
    assert doc.text == "café"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_with_and_without_bom(encoding: str) -> None:
    text = "Grüße aus Köln — ünïcödé text, long enough to recognise.\n"
    data = text.encode(encoding)  # "utf-16" writes a BOM; -le/-be do not
    assert parse_document(data, "letter.txt").text == text


def test_ascii_is_utf8() -> None:
    assert parse_document(b"plain ascii", "a.txt").text == "plain ascii"


def test_latin1_text_is_unsupported() -> None:
    data = "Café crème, naïve façade. Ça coûte 5 €?".encode("latin-1", errors="replace")
    with pytest.raises(UnsupportedFile) as info:
        parse_document(data, "latin1.txt")
    assert info.value.code == "unsupported_file"
    assert "UTF-8" in info.value.message


def test_binary_named_txt_is_unsupported() -> None:
    data = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10" + bytes(range(256))
    with pytest.raises(UnsupportedFile):
        parse_document(data, "picture.txt")


def test_utf8_with_nul_bytes_is_binary() -> None:
    with pytest.raises(UnsupportedFile):
        parse_document(b"looks like text\x00\x01\x02 but is not", "a.txt")


@pytest.mark.parametrize("filename", ["archive.zip", "legacy.doc", "image.png", "x.xyz", "y.exe"])
def test_unknown_extensions_are_unsupported(filename: str) -> None:
    with pytest.raises(UnsupportedFile) as info:
        parse_document(b"whatever", filename)
    assert info.value.code == "unsupported_file"


def test_content_type_decides_without_an_extension() -> None:
    assert parse_document(b"hello", "noext", "text/plain; charset=utf-8").text == "hello"
    pdf = make_pdf(["A page of text."])
    assert "A page of text." in parse_document(pdf, "upload", "application/pdf").text
    with pytest.raises(UnsupportedFile):
        parse_document(b"hello", "noext", "application/octet-stream")
    with pytest.raises(UnsupportedFile):
        parse_document(b"hello", "noext", None)


@pytest.mark.parametrize("data", [b"", b"   \n\t \n"])
def test_empty_text_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidFile) as info:
        parse_document(data, "empty.txt")
    assert info.value.code == "invalid_file"


# --- HTML ---------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><title>Lighthouse report</title>
<style>body { color: red; } .hidden { display: none }</style>
<script>var secret = "do not index me"; alert(1);</script>
</head>
<body>
<h1>The keeper&#39;s log</h1>
<p>The lamp was lit at   dusk &amp; extinguished
at dawn.</p>
<script type="module">console.log("still not text")</script>
<ul><li>Oil: 4 litres</li><li>Wicks: 2</li></ul>
<table><tr><td>Mon</td><td>calm</td></tr><tr><td>Tue</td><td>storm</td></tr></table>
<pre>line one
  line two</pre>
<noscript>enable javascript</noscript>
</body></html>"""


def test_html_drops_script_and_style_and_keeps_structure() -> None:
    doc = parse_document(HTML.encode(), "report.html")
    text = doc.text
    assert "secret" not in text and "alert" not in text and "still not text" not in text
    assert "color" not in text and "enable javascript" not in text
    assert text.startswith("Lighthouse report\n\nThe keeper's log")
    assert "The lamp was lit at dusk & extinguished at dawn." in text
    assert "Oil: 4 litres\nWicks: 2" in text
    assert "Mon calm\nTue storm" in text
    assert "line one\n  line two" in text  # <pre> keeps its whitespace
    assert doc.page_starts == []


def test_html_without_closing_head_still_has_its_body() -> None:
    html = b"<html><head><title>T</title><meta name=x content=y><body><p>Body text.</p></html>"
    assert parse_document(html, "x.html").text == "T\n\nBody text."


def test_html_fragment_without_head() -> None:
    assert parse_document(b"Hello <b>bold</b> world", "frag.html").text == "Hello bold world"


def test_html_declared_latin1_charset_is_honoured() -> None:
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>Crème brûlée</p></body></html>'
    doc = parse_document(html.encode("latin-1"), "menu.htm")
    assert doc.text == "Crème brûlée"


def test_html_charset_from_content_type() -> None:
    html = "<p>Smörgåsbord</p>".encode("latin-1")
    assert parse_document(html, "x.html", "text/html; charset=ISO-8859-1").text == "Smörgåsbord"


# --- PDF ----------------------------------------------------------------------------------------


def test_multi_page_pdf_records_page_starts() -> None:
    pages = [f"This is page number {i}. It talks about topic {i * 7}." for i in range(1, 6)]
    doc = parse_document(make_pdf(pages), "report.pdf")
    assert len(doc.page_starts) == 5
    assert doc.page_starts[0] == 0
    for i, start in enumerate(doc.page_starts, start=1):
        assert doc.text[start:].startswith(f"This is page number {i}.")
        assert doc.page_of(start) == i
        assert doc.page_of(start + 5) == i
    assert doc.page_of(len(doc.text) - 1) == 5


def test_pdf_hyphenation_across_line_breaks_is_repaired() -> None:
    pdf = make_pdf_lines(
        [
            [
                "We asked an important ques-",
                "tion about the harbour.",
                "A well-known fact stays hyphenated.",
                "The year ended in 1999-",
                "2000 without trouble.",
            ]
        ]
    )
    text = parse_document(pdf, "h.pdf").text
    assert "important question about the harbour." in text
    assert "well-known" in text
    assert "1999-\n2000" in text  # digits are not a broken word


def test_image_only_pdf_is_invalid() -> None:
    with pytest.raises(InvalidFile) as info:
        parse_document(make_image_pdf(), "scan.pdf")
    assert info.value.code == "invalid_file"
    assert "no extractable text" in info.value.message


def _encrypted(pdf: bytes, password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    writer.encrypt(user_password=password, owner_password="owner", algorithm="AES-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_password_protected_pdf_is_invalid() -> None:
    locked = _encrypted(make_pdf(["Top secret budget."]), "hunter2")
    with pytest.raises(InvalidFile) as info:
        parse_document(locked, "locked.pdf")
    assert "encrypted" in info.value.message


def test_pdf_encrypted_with_empty_user_password_opens() -> None:
    restricted = _encrypted(make_pdf(["Readable but restricted."]), "")
    assert "Readable but restricted." in parse_document(restricted, "r.pdf").text


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\n1 0 obj << /Type /Catalog >> garbage garbage",
        b"not a pdf at all",
        b"",
    ],
)
def test_corrupt_pdf_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidFile):
        parse_document(data, "broken.pdf")


def test_truncated_pdf_is_invalid() -> None:
    pdf = make_pdf(["Some text on a page."] * 3)
    with pytest.raises(InvalidFile):
        parse_document(pdf[: len(pdf) // 3], "cut.pdf")


# --- DOCX ---------------------------------------------------------------------------------------


def test_docx_paragraphs_heading_and_table() -> None:
    data = make_docx(
        ["The vault opens at nine.", "Bring the brass key, not the silver one."],
        heading="Operations manual",
        table=[["Shift", "Guard"], ["Night", "Ingrid"]],
    )
    doc = parse_document(data, "manual.docx")
    assert doc.text.startswith("Operations manual\n\nThe vault opens at nine.\n\n")
    assert "Bring the brass key, not the silver one." in doc.text
    assert "Shift\tGuard" in doc.text and "Night\tIngrid" in doc.text
    assert doc.page_starts == []


def test_docx_that_is_not_a_zip_is_invalid() -> None:
    with pytest.raises(InvalidFile):
        parse_document(b"PK\x03\x04 this is not really a zip", "fake.docx")


def test_docx_without_document_part_is_invalid() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
    with pytest.raises(InvalidFile):
        parse_document(out.getvalue(), "empty.docx")


def _docx_with_body(xml: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("word/document.xml", xml)
    return out.getvalue()


def test_docx_zip_bomb_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The cap is lowered so the bomb stays small in the test; the mechanism is the real one.
    monkeypatch.setattr(parsing, "MAX_DECOMPRESSED_BYTES", 1_000_000)
    body = b"<w:t>" + b"A" * 5_000_000 + b"</w:t>"
    xml = b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    bomb = _docx_with_body(xml + body + b"</w:document>")
    assert len(bomb) < 50_000  # 5 MB of XML compressed to almost nothing
    with pytest.raises(InvalidFile) as info:
        parse_document(bomb, "bomb.docx")
    assert "too large" in info.value.message


def test_docx_with_entity_expansion_is_refused() -> None:
    xml = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">
<w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>"""
    with pytest.raises(InvalidFile):
        parse_document(_docx_with_body(xml), "lol.docx")


def test_docx_with_malformed_xml_is_invalid() -> None:
    with pytest.raises(InvalidFile):
        parse_document(_docx_with_body(b"<w:document><unclosed>"), "bad.docx")


# --- PPTX ---------------------------------------------------------------------------------------


def test_pptx_slides_are_pages_in_order() -> None:
    data = make_pptx(
        [
            ("Quarterly review", "Revenue grew 12 percent."),
            ("Risks", "The supplier in Lyon may be late."),
            ("Next steps", "Hire two engineers."),
        ]
    )
    doc = parse_document(data, "deck.pptx")
    assert len(doc.page_starts) == 3
    slides = [
        doc.text[start:end].strip()
        for start, end in zip(doc.page_starts, [*doc.page_starts[1:], len(doc.text)], strict=True)
    ]
    assert slides[0].startswith("Quarterly review\nRevenue grew 12 percent.")
    assert "Footnote box" in slides[0]
    assert slides[1] == "Risks\nThe supplier in Lyon may be late."
    assert slides[2] == "Next steps\nHire two engineers."
    assert doc.page_of(doc.text.index("Lyon")) == 2


def test_pptx_that_is_a_docx_is_invalid() -> None:
    with pytest.raises(InvalidFile):
        parse_document(make_docx(["hello"]), "renamed.pptx")


# --- the document type itself -------------------------------------------------------------------


def test_page_of_unpaged_document_is_none() -> None:
    assert ParsedDocument("abc").page_of(1) is None


def test_too_much_text_is_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "MAX_TEXT_CHARS", 1000)
    with pytest.raises(InvalidFile):
        parse_document(b"word " * 1000, "big.txt")
