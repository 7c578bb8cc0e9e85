"""One reader for every file type: records, line numbers, and whole-file failures."""

from __future__ import annotations

import csv
import gzip
import json

import pytest

from thresher.curate.errors import InputError
from thresher.curate.io.readers import read_rows

RECORDS = [
    {"instruction": "说你好", "input": "", "output": "你好"},
    {"instruction": "Say hi", "input": "", "output": "Hi"},
]


def rows_of(path):
    return [(r.line, r.data, r.error) for r in read_rows(path)]


def test_jsonl_streams_with_line_numbers_and_bad_lines_are_bad_rows(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps(RECORDS[0]) + "\n\n{broken\n[1, 2]\n" + json.dumps(RECORDS[1]) + "\n", encoding="utf-8")
    rows = list(read_rows(path))
    assert [r.line for r in rows] == [1, 3, 4, 5]
    assert rows[0].data == RECORDS[0] and rows[3].data == RECORDS[1]
    assert rows[1].data is None and rows[1].error.startswith("invalid JSON") and rows[1].raw == "{broken"
    assert rows[2].error == "record must be a JSON object, got array"


def test_json_array_records_know_the_line_they_start_on(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(RECORDS, ensure_ascii=False, indent=2), encoding="utf-8")
    assert [(line, data) for line, data, _ in rows_of(path)] == [(2, RECORDS[0]), (7, RECORDS[1])]


def test_json_object_holding_one_array(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"version": 1, "meta": {"x": [1]},\n "data": [\n' + json.dumps(RECORDS[0]) + ",\n" + json.dumps(RECORDS[1]) + "]}")
    assert [(line, data) for line, data, _ in rows_of(path)] == [(3, RECORDS[0]), (4, RECORDS[1])]


@pytest.mark.parametrize(
    "text, reason",
    [('{"a": [1], "b": [2]}', "exactly one array of records, found 2"), ('"just a string"', "must hold an array"), ("[{]", "invalid JSON")],
)
def test_json_files_that_cannot_be_read_whole(tmp_path, text, reason):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=reason):
        list(read_rows(path))


def test_gzip_and_bom(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8-sig") as handle:
        handle.write("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS))
    assert [data for _, data, _ in rows_of(path)] == RECORDS
    bom = tmp_path / "b.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(RECORDS).encode())
    assert [data for _, data, _ in rows_of(bom)] == RECORDS


def test_csv_and_tsv_rows_decode_structured_columns(tmp_path):
    for suffix, delimiter in ((".csv", ","), (".tsv", "\t")):
        path = tmp_path / f"a{suffix}"
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter=delimiter)
            writer.writerow(["instruction", "output", "history"])
            writer.writerow(["q1", "a1", ""])
            writer.writerow(["q2", "a2", json.dumps([["h", "i"]])])
        assert rows_of(path) == [
            (2, {"instruction": "q1", "output": "a1"}, None),
            (3, {"instruction": "q2", "output": "a2", "history": [["h", "i"]]}, None),
        ]


def test_xlsx_rows(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["question", "answer"])
    book.active.append(["你是谁", "我是小州"])
    path = tmp_path / "a.xlsx"
    book.save(path)
    assert rows_of(path) == [(2, {"question": "你是谁", "answer": "我是小州"}, None)]


def test_parquet_and_datasets_folder(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "a.parquet")
    assert [(line, data) for line, data, _ in rows_of(tmp_path / "a.parquet")] == [(1, RECORDS[0]), (2, RECORDS[1])]
    Dataset.from_list(RECORDS).save_to_disk(tmp_path / "ds")
    assert [data for _, data, _ in rows_of(tmp_path / "ds")] == RECORDS


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("missing.jsonl", None, "no such file"),
        ("a.txt", b"hello", "unknown file type"),
        ("a.jsonl", b'{"text": "ok"}\n{"text": "\xff\xfe"}\n', "not UTF-8 text"),
    ],
)
def test_unreadable_inputs_raise_input_error_naming_the_file(tmp_path, name, content, reason):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as info:
        list(read_rows(path))
    assert str(path) in str(info.value)


def test_a_folder_that_is_not_a_dataset(tmp_path):
    with pytest.raises(InputError, match="save_to_disk"):
        list(read_rows(tmp_path))


def test_writers_round_trip_a_lone_surrogate(tmp_path):
    from thresher.curate.io.writers import JsonlWriter, RecordWriter

    record = {"text": "half an emoji \ud83d here", "zh": "中文"}
    for path, writer in ((tmp_path / "a.jsonl", JsonlWriter), (tmp_path / "b.json", RecordWriter)):
        with writer(path) as out:
            out.write(record)
        assert [data for _, data, _ in rows_of(path)] == [record]


# --- what json.load would refuse must not be half-read --------------------------------------------


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('[{"text": "one"}][{"text": "two"}]', 1),
        ('[\n  {"text": "one"}\n]\n{"text": "two"}\n', 4),
        ('[{"text": "one"}]\n\n  garbage', 3),
        ('{"data": [{"text": "one"}]}\n[{"text": "two"}]', 2),
    ],
)
def test_data_after_the_top_level_value_is_an_error_naming_its_line(tmp_path, text, line):
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(InputError, match="extra data after the top-level") as info:
        list(read_rows(path))
    assert info.value.path == str(path) and info.value.line == line


DEEP = "[" * 100_000 + "]" * 100_000


def test_a_deeply_nested_jsonl_line_is_one_bad_row(tmp_path):
    path = tmp_path / "a.jsonl"
    medium = '{"text": ' + "[" * 500 + "]" * 500 + "}"  # parses, but nothing downstream could walk it
    path.write_text(f'{{"text": "one"}}\n{DEEP}\n{medium}\n{{"text": "two"}}\n')
    rows = rows_of(path)
    assert [(line, data) for line, data, _ in rows] == [(1, {"text": "one"}), (2, None), (3, None), (4, {"text": "two"})]
    assert rows[1][2].startswith("nested too deeply") and rows[2][2].startswith("nested too deeply")


@pytest.mark.parametrize("text", [DEEP, "[" + DEEP + "]", '[{"text": "ok"}, {"a": ' + DEEP + "}]", '{"data": ' + DEEP + "}"])
def test_a_deeply_nested_json_file_is_an_input_error(tmp_path, text):
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(InputError, match="nested too deeply") as info:
        list(read_rows(path))
    assert info.value.path == str(path)


def test_a_deep_csv_cell_stays_text(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('instruction,output,history\nq,a,"' + DEEP + '"\n')
    assert rows_of(path) == [(2, {"instruction": "q", "output": "a", "history": DEEP}, None)]
