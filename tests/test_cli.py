"""The `briefbot` command through its real entry point, in a subprocess (each run loads the model: keep them few)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.sources import default_manifest, load, read_manifest

BRIEFBOT = Path(sys.executable).parent / "briefbot"
QUOTE_KEYS = {"text", "source", "title", "paragraph", "start", "end", "score"}
# A folder name as long as real ones are: error messages name the path in full.
LONG_FOLDER = "Dokumente der Redaktion - Zentralasien"


def run(args: list[str], data_dir: Path, stdin: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    """Run `briefbot ARGS` with its own data dir and an environment free of Briefbot's settings."""
    (result,) = run_together([(args, data_dir, stdin, env)])
    return result


def run_together(
    commands: list[tuple[list[str], Path, str, dict[str, str]]],
) -> list[subprocess.CompletedProcess[str]]:
    """Run several `briefbot` commands (args, data dir, stdin, extra env) at once, so their start-ups overlap."""
    assert BRIEFBOT.exists(), f"the console script is not installed: {BRIEFBOT}"
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("BRIEFBOT_", "OPENAI_", "TELEGRAM_", "DISCORD_"))
        and key not in {"DATABASE_URL", "COLUMNS", "LINES"}
    }
    started = []
    for args, data_dir, stdin, env in commands:
        process = subprocess.Popen(
            [str(BRIEFBOT), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", env={**clean, "BRIEFBOT_DATA_DIR": str(data_dir), **env},
        )
        started.append((process, stdin))
    results = []
    try:
        for process, stdin in started:
            out, err = process.communicate(stdin, timeout=120)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    finally:
        for process, _ in started:
            process.kill()
            process.wait()
    return results


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir for the module, so only the first run embeds the seed."""
    return tmp_path_factory.mktemp("cli-data")


@pytest.fixture(scope="module")
def seed_text() -> str:
    (spec,) = read_manifest(default_manifest())
    return load(spec).text


def assert_answer_object(obj: dict[str, object], question: str, seed_text: str) -> None:
    """The JSON contract of one answer."""
    assert set(obj) == {"question", "answered", "answer", "quotes"}
    assert obj["question"] == question
    assert isinstance(obj["answered"], bool) and isinstance(obj["answer"], str)
    quotes = obj["quotes"]
    assert isinstance(quotes, list)
    assert bool(quotes) == obj["answered"]
    for quote in quotes:
        assert set(quote) == QUOTE_KEYS
        assert quote["source"] == "putin-tokajew" and quote["title"] == "Warum Putin Tokajew umwirbt"
        assert isinstance(quote["paragraph"], int) and quote["paragraph"] >= 1
        assert isinstance(quote["score"], float)
        assert seed_text[quote["start"] : quote["end"]] == quote["text"]
    scores = [q["score"] for q in quotes]
    assert scores == sorted(scores, reverse=True)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A non-zero exit with an `error:` message naming the problem, and no traceback."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    message = result.stderr.strip()
    assert message.startswith("error: "), result.stderr
    unwrapped = "".join(message.split())  # robust to a terminal-width line wrap
    for fragment in fragments:
        assert "".join(fragment.split()) in unwrapped, (fragment, message)


def test_ask_json_prints_one_answer_object(data_dir: Path, seed_text: str) -> None:
    question = "Why did Putin call Tokayev?"
    result = run(["ask", "--json", question], data_dir)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    answer = json.loads(line)
    assert_answer_object(answer, question, seed_text)
    assert answer["answered"] is True
    assert any("Kommersant" in q["text"] or "Daher musste Putin" in q["text"] for q in answer["quotes"])


def test_ask_json_reads_one_question_per_line_from_stdin(data_dir: Path, seed_text: str) -> None:
    questions = ["Why did Putin call Tokayev?", "What is the capital of France?", "Почему Путин позвонил Токаеву?"]
    result = run(["ask", "--json", "-"], data_dir, stdin="\n".join(questions) + "\n")
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["question"] for a in answers] == questions
    for question, answer in zip(questions, answers, strict=True):
        assert_answer_object(answer, question, seed_text)
    assert [a["answered"] for a in answers] == [True, False, True]


BAD_QUESTIONS = {
    "empty": ("", "The question is empty"),
    "100kB": ("Warum? " * 15_000, "The question is too long (105000 characters"),
}


@pytest.fixture(scope="module")
def bad_question_runs(data_dir: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    return {case: run(["ask", question], data_dir) for case, (question, _) in BAD_QUESTIONS.items()}


@pytest.mark.parametrize("case", sorted(BAD_QUESTIONS))
def test_a_bad_question_is_a_one_line_error(
    bad_question_runs: dict[str, subprocess.CompletedProcess[str]], case: str
) -> None:
    result = bad_question_runs[case]
    assert result.returncode == 2
    assert_clean_failure(result, BAD_QUESTIONS[case][1])
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_stderr_holds_nothing_but_the_message(bad_question_runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    stderr = bad_question_runs["empty"].stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1


def _broken_sources(folder: Path, case: str) -> Path:
    """A BRIEFBOT_SOURCES value that cannot be loaded: the manifest itself, or its only file."""
    folder.mkdir(parents=True)
    if case == "missing-manifest":
        return folder / "sources.toml"
    if case == "not-utf8-file":
        (folder / "artikel.txt").write_bytes("Grüße aus Almaty".encode("latin-1"))
    manifest = folder / "sources.toml"
    manifest.write_text('[[source]]\nid = "artikel"\npath = "artikel.txt"\n', encoding="utf-8")
    return manifest


BROKEN = {
    "missing-manifest": ("sources manifest not found", "sources.toml"),
    "missing-file": ("file not found", "artikel.txt"),
    "not-utf8-file": ("not UTF-8 text", "artikel.txt"),
}


@pytest.fixture(scope="module")
def broken_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, subprocess.CompletedProcess[str]]]:
    """`briefbot ask` over each kind of broken source (they fail before the model loads)."""
    manifests = {}
    for case in BROKEN:
        base = tmp_path_factory.mktemp(case)
        manifests[case] = (_broken_sources(base / LONG_FOLDER, case), base / "data")
    results = run_together(
        [(["ask", "Wer ist Tokajew?"], data, "", {"BRIEFBOT_SOURCES": str(manifest)})
         for manifest, data in manifests.values()]
    )
    return {case: (manifests[case][0], result) for case, result in zip(BROKEN, results, strict=True)}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_source_is_a_clear_error(
    broken_runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]], case: str
) -> None:
    manifest, result = broken_runs[case]
    assert result.returncode == 1
    what, name = BROKEN[case]
    assert_clean_failure(result, what, str(manifest.parent / name))


def test_an_error_naming_a_long_path_stays_on_one_line(
    broken_runs: dict[str, tuple[Path, subprocess.CompletedProcess[str]]],
) -> None:
    manifest, result = broken_runs["missing-manifest"]
    assert result.stderr.strip() == f"error: sources manifest not found: {manifest}"


def test_chat_works_with_piped_stdin(data_dir: Path) -> None:
    script = "/help\nWhy did Putin call Tokayev?\n/sources\n/quit\nWhat is the capital of France?\n"
    result = run(["chat"], data_dir, stdin=script)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout
    assert "/sources" in out and "/quit" in out  # the help
    quoted = [out.index(word) for word in ("Kommersant", "beruhigen") if word in out]
    assert quoted  # the answer's quotes...
    assert "¶" in out  # ...with their paragraphs
    assert "putin-tokajew" in out and "Sources" in out  # the source table
    assert out.index("/quit") < min(quoted) < out.rindex("Sources")
    assert "I could not find" not in out  # nothing after /quit was asked


def test_eval_prints_the_figures(data_dir: Path, tmp_path: Path) -> None:
    cases = tmp_path / "questions.jsonl"
    cases.write_text(
        "\n".join(
            json.dumps(case, ensure_ascii=False)
            for case in [
                {"id": "a", "lang": "en", "question": "Why did Putin call Tokayev?",
                 "gold": ["dem Blatt Kommersant gab", "Daher musste Putin Tokajew beruhigen"]},
                {"id": "b", "lang": "de", "question": "Wer ist Sergej Tschiwiljow?", "gold": ["Energieminister"]},
                {"id": "c", "lang": "en", "question": "What is the capital of France?", "gold": []},
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = run(["eval", str(cases)], data_dir)
    assert result.returncode == 0, result.stderr
    figures = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    figures = {key.strip(): float(value) for key, value in figures.items()}
    assert figures["answerable"] == 2 and figures["unanswerable"] == 1
    assert figures["hit@3"] == 1.0
    assert 0 < figures["mrr"] <= 1.0 and "hit@1" in figures
    assert figures["abstention_accuracy"] == 1.0
    assert figures["quote_fidelity"] == 1.0
    assert 0 < figures["latency_p50_ms"] <= figures["latency_p95_ms"]


@pytest.mark.parametrize("args", [["ask", "--help"], ["index"]])
def test_a_bad_setting_is_a_one_line_error_naming_the_variable(tmp_path: Path, args: list[str]) -> None:
    secret = "123456:SECRET-token-value"
    result = run(args, tmp_path, TELEGRAM_ADMIN_IDS="abc", BRIEFBOT_LLM_TIMEOUT="soon", TELEGRAM_BOT_TOKEN=secret)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: invalid configuration: ")
    assert "TELEGRAM_ADMIN_IDS: invalid value" in result.stderr and "BRIEFBOT_LLM_TIMEOUT" in result.stderr
    assert "Traceback" not in result.stderr and "SECRET" not in result.stderr + result.stdout
    assert "abc" not in result.stderr and "soon" not in result.stderr


def test_an_unreachable_telegram_api_base_is_reported_without_the_token(data_dir: Path) -> None:
    secret = "123456:SECRET-token-value"
    result = run(["run", "telegram"], data_dir, TELEGRAM_BOT_TOKEN=secret, TELEGRAM_API_BASE="ftp://api.example.org/x")
    assert result.returncode == 1
    assert result.stderr == "error: cannot reach the Telegram Bot API at api.example.org (NonHttpUrlClientError)\n"
    assert "SECRET" not in result.stdout
