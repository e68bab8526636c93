"""Bytes of an uploaded file -> plain text, with the character offset where each page starts.

Why it exists: file_search indexes text, so every format a user may attach (plain text and code,
Markdown, JSON, HTML, PDF, DOCX, PPTX) is turned into one string here, deterministically, before
chunking. Page offsets survive so chunks can say which page they came from.

Failures are typed (`assistants.retrieval.errors`): a file we do not read is `unsupported_file`,
a file of a type we read whose content is broken or has no text is `invalid_file`. Both are
final: the ingestion activity records them as the file's `last_error` and never retries, so a
bad upload ends `failed` instead of staying `in_progress`.

Parsing is bounded in memory: zip containers (DOCX, PPTX) are read member by member with a cap
on decompressed bytes (zip bombs), XML with a DTD is refused (entity bombs), and the extracted
text is capped. Time is bounded by the ingestion activity's timeout, not here.
"""

from __future__ import annotations

import bisect
import codecs
import io
import posixpath
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import PurePosixPath
from xml.etree import ElementTree

from assistants.retrieval.errors import IngestionError, InvalidFile, UnsupportedFile

# Most text one file may yield (characters). OpenAI caps a file at 5M tokens (~20M characters);
# chunking enforces the token cap, this only keeps a hostile file from exhausting memory first.
MAX_TEXT_CHARS = 32 * 1024 * 1024
# Most bytes read out of a zip container (DOCX/PPTX), all members together.
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024

TEXT_EXTENSIONS = frozenset(
    {
        ".txt", ".md", ".markdown", ".json", ".py", ".js", ".ts", ".c", ".h", ".cs", ".cpp",
        ".hpp", ".java", ".php", ".rb", ".sh", ".css", ".tex", ".go", ".rs",
    }
)  # fmt: skip
HTML_EXTENSIONS = frozenset({".html", ".htm"})

_DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
_PPTX_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.presentation"


@dataclass
class ParsedDocument:
    """The text of one file. `page_starts[i]` is the offset in `text` where page i+1 begins
    (PDF pages, PPTX slides); `[]` for formats without pages."""

    text: str
    page_starts: list[int] = field(default_factory=list)

    def page_of(self, offset: int) -> int | None:
        """1-based page number of the character at `offset`, or None if unpaged."""
        if not self.page_starts:
            return None
        return max(1, bisect.bisect_right(self.page_starts, offset))


def parse_document(data: bytes, filename: str, content_type: str | None = None) -> ParsedDocument:
    """Extract the text of `data`. The extension of `filename` decides the format; the
    `content_type` is consulted only when the extension is missing or unknown.

    Raises UnsupportedFile / InvalidFile (never anything else for bad input)."""
    kind = _kind(filename, content_type)
    parser = _PARSERS.get(kind)
    if parser is None:
        raise UnsupportedFile(f"Files of type '{_extension(filename) or kind}' are not supported.")
    try:
        doc = parser(data, content_type)
    except IngestionError:
        raise
    except (RecursionError, MemoryError) as error:
        raise InvalidFile(f"The file could not be parsed ({type(error).__name__}).") from error
    if len(doc.text) > MAX_TEXT_CHARS:
        raise InvalidFile(f"The file has more than {MAX_TEXT_CHARS} characters of text.")
    if not doc.text.strip():
        raise InvalidFile("The file contains no text.")
    return doc


# --- dispatch ---------------------------------------------------------------------------------


def _extension(filename: str) -> str:
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower()


def _kind(filename: str, content_type: str | None) -> str:
    ext = _extension(filename)
    if ext in TEXT_EXTENSIONS:
        return "text"
    if ext in HTML_EXTENSIONS:
        return "html"
    if ext in (".pdf", ".docx", ".pptx"):
        return ext[1:]
    if ext:
        return "unknown"
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime == "application/pdf":
        return "pdf"
    if mime == _DOCX_TYPE:
        return "docx"
    if mime == _PPTX_TYPE:
        return "pptx"
    if mime in ("text/html", "application/xhtml+xml"):
        return "html"
    if mime.startswith("text/") or mime == "application/json":
        return "text"
    return "unknown"


# --- text -------------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Control characters other than \t \n \v \f \r: their presence means binary data, not text.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def decode_text(data: bytes, declared: str | None = None) -> str:
    """Decode text the way OpenAI's file_search accepts it: UTF-8, UTF-16 or ASCII, strictly
    (a BOM decides; UTF-16 without a BOM is recognised by its zero bytes). `declared` is a
    charset named by the document itself (HTML) and is tried after UTF-8. Anything else, or
    binary data, is `unsupported_file`: guessing a legacy code page would index garbage."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _checked(_strict(data[len(bom) :], encoding))
    text = _strict(data, "utf-8")
    if text is None:
        text = _utf16_without_bom(data)
    if text is None and declared:
        try:
            codecs.lookup(declared)
        except LookupError:
            pass
        else:
            text = _strict(data, declared)
    return _checked(text)


def _strict(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, ValueError):
        return None


def _utf16_without_bom(data: bytes) -> str | None:
    if len(data) < 2 or len(data) % 2:
        return None
    sample = data[:4096]
    even_zeros = sample[0::2].count(0)
    odd_zeros = sample[1::2].count(0)
    half = len(sample) // 2
    if odd_zeros > half * 0.3 and even_zeros == 0:
        return _strict(data, "utf-16-le")
    if even_zeros > half * 0.3 and odd_zeros == 0:
        return _strict(data, "utf-16-be")
    return None


def _checked(text: str | None) -> str:
    if text is None:
        raise UnsupportedFile("The file is not UTF-8, UTF-16 or ASCII text.")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _CONTROL.search(text):
        raise UnsupportedFile("The file looks binary, not text.")
    return text


def _parse_text(data: bytes, content_type: str | None) -> ParsedDocument:
    return ParsedDocument(decode_text(data))


# --- HTML -------------------------------------------------------------------------------------

_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "svg"})
_PARAGRAPH_TAGS = frozenset(
    {
        "p", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "blockquote", "table",
        "ul", "ol", "dl", "pre", "figure", "header", "footer", "main", "nav", "aside", "title",
        "hr", "form", "fieldset", "details",
    }
)  # fmt: skip
_LINE_TAGS = frozenset({"br", "div", "li", "tr", "dt", "dd", "caption", "summary", "option"})
_CELL_TAGS = frozenset({"td", "th"})
_VOID_TAGS = frozenset({"br", "hr", "img", "input", "meta", "link", "area", "base", "col", "wbr"})
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


class _HTMLText(HTMLParser):
    """Collects visible text; block elements become line or paragraph breaks.

    Breaks are kept pending until the next visible text, so `</li><li>` is one line break and
    `</p>\n<p>` one paragraph break however the markup is laid out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.pending = ""  # "", " ", "\n" or "\n\n": the strongest break seen since the last text
        self.skip_depth = 0
        self.pre_depth = 0
        self.title: list[str] = []
        self.in_title = False
        # <head> is invisible (but for its <title>); a missing </head> ends at <body>.
        self.in_head = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag == "head":
            self.in_head = True
        elif tag == "body":
            self.in_head = False
        if tag in _SKIPPED_TAGS and tag not in _VOID_TAGS:
            self.skip_depth += 1
        elif tag == "pre":
            self.pre_depth += 1
        self._break(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag == "head":
            self.in_head = False
        if tag in _SKIPPED_TAGS and tag not in _VOID_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        self._break(tag)

    def _break(self, tag: str) -> None:
        if tag in _PARAGRAPH_TAGS:
            level = "\n\n"
        elif tag in _LINE_TAGS:
            level = "\n"
        elif tag in _CELL_TAGS:
            level = " "
        else:
            return
        if len(level) > len(self.pending) or (level != " " and self.pending == " "):
            self.pending = level

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if self.skip_depth or self.in_head or self.in_title:
            return
        if self.pre_depth:
            text = data.replace("\n", "\x00")  # kept: protected from whitespace folding
        else:
            text = re.sub(r"\s+", " ", data)
            if not text.strip():
                if not self.pending:
                    self.parts.append(" ")
                return
        if self.pending:
            self.parts.append(self.pending)
            self.pending = ""
        self.parts.append(text)


def _parse_html(data: bytes, content_type: str | None) -> ParsedDocument:
    declared = _content_type_charset(content_type)
    if declared is None:
        match = _CHARSET.search(data[:4096])
        declared = match.group(1).decode("ascii") if match else None
    source = decode_text(data, declared)
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    body = _tidy("".join(parser.parts)).replace("\x00", "\n")
    title = re.sub(r"\s+", " ", "".join(parser.title)).strip()
    if title and not body.startswith(title):
        body = f"{title}\n\n{body}" if body else title
    return ParsedDocument(body)


def _content_type_charset(content_type: str | None) -> str | None:
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None


def _tidy(text: str) -> str:
    """Trim each line, and fold runs of blank lines into one paragraph break."""
    lines = [line.strip(" \t") for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


# --- PDF --------------------------------------------------------------------------------------

# A word broken across a line end: "ques-\ntion" -> "question" (also the soft hyphen U+00AD).
_HYPHENATED = re.compile(r"(?<=[^\W\d_])[-\u00ad]\n(?=[a-z])")


def _clean_pdf_page(text: str) -> str:
    text = text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = _HYPHENATED.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _parse_pdf(data: bytes, content_type: str | None) -> ParsedDocument:
    # pypdf is imported here: a process that never sees a PDF does not pay for it.
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    if b"%PDF-" not in data[:1024]:
        raise InvalidFile("The file is not a PDF.")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password (permissions only): those
            # open; a PDF that needs a password cannot be read.
            try:
                opened = reader.decrypt("")
            except Exception as error:
                raise InvalidFile("The PDF is encrypted.") from error
            if not opened:
                raise InvalidFile("The PDF is encrypted with a password.")
        page_texts: list[str] = []
        total = 0
        for page in reader.pages:
            text = _clean_pdf_page(page.extract_text() or "")
            total += len(text) + 2
            if total > MAX_TEXT_CHARS:
                raise InvalidFile(f"The file has more than {MAX_TEXT_CHARS} characters of text.")
            page_texts.append(text)
    except IngestionError:
        raise
    except FileNotDecryptedError as error:
        raise InvalidFile("The PDF is encrypted with a password.") from error
    except PdfReadError as error:
        raise InvalidFile("The PDF is damaged and cannot be read.") from error
    except Exception as error:  # pypdf raises many types on malformed input
        raise InvalidFile(f"The PDF cannot be read ({type(error).__name__}).") from error
    if not any(text for text in page_texts):
        raise InvalidFile(
            "The PDF has no extractable text (scanned or image-only pages; OCR is not supported)."
        )
    return _paged(page_texts)


def _paged(pages: list[str]) -> ParsedDocument:
    """Join pages with a paragraph break, recording where each starts."""
    starts: list[int] = []
    parts: list[str] = []
    offset = 0
    for i, text in enumerate(pages):
        if i:
            parts.append("\n\n")
            offset += 2
        starts.append(offset)
        parts.append(text)
        offset += len(text)
    return ParsedDocument("".join(parts), starts)


# --- OOXML (DOCX, PPTX) -----------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
_P = "{http://schemas.openxmlformats.org/presentationml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_PKG_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}"


class _Zip:
    """A zip container read with a budget on decompressed bytes."""

    def __init__(self, data: bytes, what: str) -> None:
        try:
            self.zf = zipfile.ZipFile(io.BytesIO(data))
        except (zipfile.BadZipFile, ValueError, OSError) as error:
            raise InvalidFile(f"The file is not a valid {what} (not a zip container).") from error
        self.what = what
        self.budget = MAX_DECOMPRESSED_BYTES
        self.names = set(self.zf.namelist())

    def read(self, name: str) -> bytes:
        if name not in self.names:
            raise InvalidFile(f"The {self.what} has no '{name}' part.")
        try:
            with self.zf.open(name) as member:
                # Read at most the remaining budget (+1 to detect overflow): the size in the zip
                # header can lie, the bytes that come out cannot.
                content = member.read(self.budget + 1)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as error:
            raise InvalidFile(f"The {self.what} is damaged.") from error
        except (NotImplementedError, RuntimeError) as error:  # unknown compression, encryption
            raise InvalidFile(f"The {self.what} cannot be read ({error}).") from error
        if len(content) > self.budget:
            raise InvalidFile(f"The {self.what} is too large once decompressed.")
        self.budget -= len(content)
        return content

    def xml(self, name: str) -> ElementTree.Element:
        return _xml(self.read(name), self.what)


def _xml(content: bytes, what: str) -> ElementTree.Element:
    # OOXML never uses a DTD; refusing one rules out entity-expansion bombs outright. (In XML
    # text a literal "<" is always escaped, so this can only match markup.)
    if b"<!DOCTYPE" in content:
        raise InvalidFile(f"The {what} contains a DTD, which is not allowed.")
    try:
        return ElementTree.fromstring(content)
    except ElementTree.ParseError as error:
        raise InvalidFile(f"The {what} contains malformed XML.") from error


def _parse_docx(data: bytes, content_type: str | None) -> ParsedDocument:
    root = _Zip(data, "DOCX").xml("word/document.xml")
    out: list[str] = []
    _docx_walk(root, out, in_table=False)
    # Table cells end with a tab, their paragraphs with a space: "a \tb" -> "a\tb".
    return ParsedDocument(_tidy(re.sub(r" +\t", "\t", "".join(out))))


def _docx_walk(node: ElementTree.Element, out: list[str], *, in_table: bool) -> None:
    # Iterative pre-order walk (a deeply nested document cannot hit the recursion limit); a
    # string on the stack is a separator emitted after an element's children (paragraph end,
    # table cell, table row).
    stack: list[tuple[ElementTree.Element, bool] | str] = [(node, in_table)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        element, table = item
        tag = element.tag
        if tag == f"{_W}t":  # (deleted text of tracked changes is `w:delText`: skipped)
            out.append(element.text or "")
        elif tag == f"{_W}tab":
            out.append("\t")
        elif tag in (f"{_W}br", f"{_W}cr"):
            out.append("\n")
        elif tag == f"{_W}noBreakHyphen":
            out.append("-")
        children = list(element)
        if tag == f"{_W}p":
            stack.append(" " if table else "\n\n")
        elif tag == f"{_W}tc":
            stack.append("\t")
        elif tag == f"{_W}tr":
            stack.append("\n")
        child_table = table or tag == f"{_W}tbl"
        stack.extend((child, child_table) for child in reversed(children))


def _parse_pptx(data: bytes, content_type: str | None) -> ParsedDocument:
    archive = _Zip(data, "PPTX")
    slides = _pptx_slide_order(archive)
    if not slides:
        raise InvalidFile("The PPTX has no slides.")
    pages: list[str] = []
    for name in slides:
        root = archive.xml(name)
        paragraphs: list[str] = []
        for paragraph in root.iter(f"{_A}p"):
            pieces: list[str] = []
            for element in paragraph.iter():
                if element.tag == f"{_A}t":
                    pieces.append(element.text or "")
                elif element.tag == f"{_A}br":
                    pieces.append("\n")
            line = "".join(pieces).strip()
            if line:
                paragraphs.append(line)
        pages.append("\n".join(paragraphs))
    return _paged(pages)


def _pptx_slide_order(archive: _Zip) -> list[str]:
    """Slide part names in presentation order (presentation.xml's list, through its rels)."""
    presentation = archive.xml("ppt/presentation.xml")
    rels_root = archive.xml("ppt/_rels/presentation.xml.rels")
    targets = {
        rel.get("Id"): rel.get("Target", "") for rel in rels_root.iter(f"{_PKG_REL}Relationship")
    }
    names: list[str] = []
    for slide_id in presentation.iter(f"{_P}sldId"):
        target = targets.get(slide_id.get(f"{_R}id"))
        if not target:
            continue
        name = target.lstrip("/") if target.startswith("/") else f"ppt/{target}"
        name = posixpath.normpath(name)
        if name in archive.names:
            names.append(name)
    return names


_PARSERS: dict[str, Callable[[bytes, str | None], ParsedDocument]] = {
    "text": _parse_text,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
    "pptx": _parse_pptx,
}
