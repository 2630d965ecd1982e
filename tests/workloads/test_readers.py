"""Trace readers on small fixtures, including malformed rows (errors name file and line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from load_generator import load_workload, resolve
from load_generator.readers import read_file
from load_generator.readers.azure import read_azure
from load_generator.readers.burstgpt import read_burstgpt
from load_generator.readers.mooncake import read_mooncake
from load_generator.readers.simple import read_simple, write_simple
from load_generator.registry import DATA_DIR, LENGTH_FILES, TRACE_FILES
from phaser.errors import PhaserError

FIX = Path(__file__).parent / "fixtures"


def test_azure_parses_100ns_timestamps_sorts_and_skips_empty_rows():
    t = read_azure(FIX / "azure_small_code.csv")
    assert [r.prompt_tokens for r in t.requests] == [110, 4808, 3180, 12]
    assert [r.output_tokens for r in t.requests] == [27, 10, 8, 1]
    assert [r.arrival_s for r in t.requests] == pytest.approx([0.0, 0.47996, 0.53196, 2.5], abs=1e-6)
    assert t.skipped == {"0 context or generated tokens": 1}
    assert {r.task for r in t.requests} == {"coding"}  # from the file name
    assert len({r.id for r in t.requests}) == 4


@pytest.mark.parametrize("name, line, what", [("azure_bad_tokens.csv", 3, "GeneratedTokens"),
                                              ("azure_bad_time.csv", 3, "TIMESTAMP")])
def test_azure_malformed_row_names_file_and_line(name, line, what):
    with pytest.raises(PhaserError, match=rf"{name}:{line}: {what}"):
        read_azure(FIX / name)


def test_vendored_azure_traces_match_their_documented_size_and_means():
    conv = load_workload("azure-conv")
    code = load_workload("azure-code")
    assert (len(conv), len(code)) == (19366, 8819)  # rows as documented in data/SOURCES.md
    assert sum(r.prompt_tokens for r in conv) / len(conv) == pytest.approx(1155, rel=0.01)
    assert sum(r.output_tokens for r in conv) / len(conv) == pytest.approx(211, rel=0.01)
    assert sum(r.prompt_tokens for r in code) / len(code) == pytest.approx(2048, rel=0.01)
    assert conv[0].arrival_s == 0.0 and all(a.arrival_s <= b.arrival_s for a, b in zip(conv, conv[1:]))


def test_burstgpt_skips_and_counts_failed_rows():
    t = read_burstgpt(FIX / "burstgpt_small.csv")
    assert [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.task) for r in t.requests] == [
        (0.0, 472, 18, "ChatGPT"), (113.0, 417, 217, "GPT-4"), (126.0, 200, 50, "GPT-4")]
    assert t.skipped == {"failed (0 response tokens)": 2}


def test_burstgpt_negative_tokens_is_an_error_with_line():
    with pytest.raises(PhaserError, match=r"burstgpt_bad.csv:3: Response tokens must be between 0"):
        read_burstgpt(FIX / "burstgpt_bad.csv")


def test_mooncake_ms_timestamps_and_hash_ids_become_prefix_ids():
    t = read_mooncake(FIX / "mooncake_small.jsonl")
    assert [r.arrival_s for r in t.requests] == [0.0, 0.75, 1.5]
    assert [r.prompt_tokens for r in t.requests] == [6755, 300, 1100]
    assert t.requests[0].prefix_ids == list(range(14))
    assert t.requests[1].prefix_ids is None
    assert t.requests[2].prefix_ids == [0, 1, 46]


@pytest.mark.parametrize("name, msg", [("mooncake_bad.jsonl", r"mooncake_bad.jsonl:2: missing field\(s\) input_length"),
                                       ("mooncake_badjson.jsonl", r"mooncake_badjson.jsonl:2: not valid JSON")])
def test_mooncake_malformed(name, msg):
    with pytest.raises(PhaserError, match=msg):
        read_mooncake(FIX / name)


def test_simple_csv_and_jsonl():
    t = read_simple(FIX / "simple.csv")
    assert [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.task, r.prefix_ids) for r in t.requests] == [
        (0.0, 50, 200, None, None), (0.5, 100, 20, "chat", [7, 7, 9]), (1.25, 10, 1, "code", [3, 4])]
    j = read_simple(FIX / "simple.jsonl")
    assert [(r.arrival_s, r.task, r.prefix_ids) for r in j.requests] == [(1.0, "qa", [1, 2]), (2.0, None, None)]


@pytest.mark.parametrize("name, msg", [("simple_bad.csv", r"simple_bad.csv:4: prompt_tokens must be a whole number"),
                                       ("simple_missing_col.csv", r"simple_missing_col.csv:1: missing column\(s\) output_tokens"),
                                       ("unknown.csv", r"unknown.csv:1: unknown trace format"),
                                       ("does_not_exist.csv", r"does not exist")])
def test_malformed_files_give_one_line_errors(name, msg):
    with pytest.raises(PhaserError, match=msg) as e:
        read_file(FIX / name)
    assert "\n" not in str(e.value)


def test_format_is_detected_from_the_header():
    assert read_file(FIX / "burstgpt_small.csv").requests[0].task == "ChatGPT"
    assert read_file(FIX / "mooncake_small.jsonl").requests[0].prefix_ids
    assert load_workload(str(FIX / "azure_small_code.csv"))[0].prompt_tokens == 110


def test_export_round_trips_through_the_simple_format(tmp_path):
    original = load_workload(str(FIX / "mooncake_small.jsonl"))
    for suffix in (".csv", ".jsonl"):
        write_simple(original, tmp_path / f"w{suffix}")
        back = load_workload(str(tmp_path / f"w{suffix}"))
        assert [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.task, r.prefix_ids) for r in back] == \
               [(r.arrival_s, r.prompt_tokens, r.output_tokens, r.task, r.prefix_ids) for r in original]


def test_length_file_gets_synthetic_arrivals_and_skips_zero_decode():
    t = resolve(str(FIX / "lengths_small.csv"), n=1000, rate=50.0, seed=3)
    assert t.skipped == {"0 prefill or decode tokens": 1}
    assert {(r.prompt_tokens, r.output_tokens) for r in t.requests} == {(100, 10), (300, 30)}


def test_vendored_files_exist_with_attribution():
    for f in (*TRACE_FILES.values(), *LENGTH_FILES.values()):
        assert (DATA_DIR / f).is_file()
    sources = (DATA_DIR / "SOURCES.md").read_text()
    for needle in ("CC-BY-4.0", "Apache-2.0", "MIT", "Splitwise", "sarathi-serve", "vidur"):
        assert needle in sources
