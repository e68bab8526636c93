"""Citation markers → annotations, and where a streamed delta batch may end."""

from __future__ import annotations

from assistants.file_search import tool as search_tool
from assistants.file_search.citations import MAX_MARKER, Citer, flushable

CITER = Citer({(0, 0): ("file-a", "quote a"), (0, 1): ("file-b", "quote b")})


def test_known_markers_become_annotations_in_code_points() -> None:
    text = "Émile says 🐧 swim【0:1†source】 and【0:0†notes.txt】【7:0†source】."
    found = CITER.annotations(text)
    assert [a["file_citation"]["file_id"] for a in found] == ["file-b", "file-a"]
    for annotation in found:
        assert text[annotation["start_index"] : annotation["end_index"]] == annotation["text"]
    assert found[0]["start_index"] == text.index("【")  # a code point index (🐧 counts as one)
    assert found[0]["file_citation"]["quote"] == "quote b"


def test_annotations_within_a_range_only() -> None:
    text = "a【0:0†source】b【0:1†source】"
    middle = text.index("b")
    assert [a["text"] for a in CITER.annotations(text, middle)] == ["【0:1†source】"]
    assert [a["text"] for a in CITER.annotations(text, 0, middle)] == ["【0:0†source】"]


def test_a_batch_never_ends_inside_a_marker() -> None:
    assert flushable("plain text", 0) == len("plain text")
    assert flushable("cooled【0:", 0) == len("cooled")
    assert flushable("cooled【0:0†source】", 0) == len("cooled【0:0†source】")
    assert flushable("cooled【0:0†source】 and【1", 0) == len("cooled【0:0†source】 and")
    # A 【 that never closes is released once it is too old to be a marker.
    stray = "【" + "x" * MAX_MARKER
    assert flushable(stray, 0) == len(stray)


def test_queries_are_read_leniently() -> None:
    assert search_tool.parse_queries('{"queries": ["a", " ", "b"]}') == ["a", "b"]
    assert search_tool.parse_queries('{"query": "solo"}') == ["solo"]
    assert search_tool.parse_queries("bare words") == ["bare words"]
    assert search_tool.parse_queries(json_list(7)) == [str(i) for i in range(5)]


def json_list(n: int) -> str:
    return '{"queries": [' + ", ".join(f'"{i}"' for i in range(n)) + "]}"


def test_steps_hide_private_fields_and_content_unless_included() -> None:
    call = {
        "id": "call_1",
        "type": "file_search",
        "file_search": {
            "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0},
            "results": [
                {
                    "file_id": "file-a",
                    "file_name": "a.txt",
                    "score": 0.9,
                    "content": [{"type": "text", "text": "chunk"}],
                }
            ],
        },
        search_tool.PRIVATE: {"arguments": "{}", "ordinal": 0, "done": True, "error": None},
    }
    details = {"type": "tool_calls", "tool_calls": [call]}
    plain = search_tool.public_details(details)["tool_calls"][0]
    assert search_tool.PRIVATE not in plain
    assert plain["file_search"]["results"] == [
        {"file_id": "file-a", "file_name": "a.txt", "score": 0.9}
    ]
    full = search_tool.public_details(details, True)["tool_calls"][0]
    assert full["file_search"]["results"][0]["content"] == [{"type": "text", "text": "chunk"}]
    other = {"type": "message_creation", "message_creation": {"message_id": "msg_1"}}
    assert search_tool.public_details(other) is other
