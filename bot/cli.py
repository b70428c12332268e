"""The `briefbot` command: a thin typer layer over the core. Errors are mapped to messages here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from pydantic import AliasChoices, ValidationError
from pydantic_core import ErrorDetails
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

from bot.briefing import Briefing
from bot.config import Settings
from bot.errors import BriefbotError, ConfigError, InputError
from bot.index import ProgressFn
from bot.logs import setup_logging

app = typer.Typer(
    help="Briefbot: answers questions about its sources with verbatim, cited quotes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, soft_wrap=True)  # messages stay on one line, whatever the width


class State:
    """What every command needs, built once per process in the callback."""

    settings: Settings
    briefing: Briefing


state = State()


def load_settings() -> Settings:
    """Settings from the environment; a bad value is a one-line ConfigError naming its variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_setting_problem(error) for error in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None


def _setting_problem(error: ErrorDetails) -> str:
    """'VARIABLE: what is wrong', never the value itself (it may be a secret)."""
    name = str(error["loc"][0]) if error["loc"] else "?"
    candidates = _variables().get(name, [name.upper()])
    variable = next((c for c in candidates if c.upper() in {k.upper() for k in os.environ}), candidates[0])
    # pydantic's own messages describe the expected type; a validator's text may quote the value
    detail = "invalid value" if error["type"] in {"value_error", "assertion_error"} else error["msg"]
    return f"{variable}: {detail}"


def _variables() -> dict[str, list[str]]:
    """Every field name and environment alias -> the environment variables that set that field."""
    prefix = Settings.model_config.get("env_prefix", "")
    found: dict[str, list[str]] = {}
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        names = [c for c in alias.choices if isinstance(c, str)] if isinstance(alias, AliasChoices) else []
        names = names or [f"{prefix}{field_name}".upper()]
        for key in [field_name, *names]:
            found[key] = names
    return found


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug details.")] = False,
) -> None:
    settings = load_settings()
    setup_logging(settings, verbose)
    from bot.llm import from_settings

    state.settings = settings
    state.briefing = Briefing(settings, llm=from_settings(settings))


@contextmanager
def indexing_progress(console: Console) -> Iterator[ProgressFn]:
    """A progress callback that shows a bar only once there is embedding to do."""
    progress = Progress(
        TextColumn("indexing"), BarColumn(), MofNCompleteColumn(), TextColumn("sentences"),
        TimeRemainingColumn(), console=console, transient=True,
    )
    task: list[TaskID] = []

    def update(done: int, total: int) -> None:
        if not task:
            if done >= total:
                return
            progress.start()
            task.append(progress.add_task("index", total=total))
        progress.update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        if task:
            progress.stop()


def _load_index(console: Console) -> None:
    with indexing_progress(console) as update:
        state.briefing.reload(progress=update)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, or '-' to read one per line from stdin.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (one object per question).")] = False,
) -> None:
    """Answer a question with verbatim quotes and their citations."""
    from bot.render.terminal import answer_terminal

    out = Console()
    _load_index(err)
    questions = (line.rstrip("\n") for line in sys.stdin) if question == "-" else iter([question])
    failed = False
    for text in questions:
        if question == "-" and not text.strip():
            continue
        try:
            answer = state.briefing.ask(text)
        except InputError as exc:
            failed = True
            if as_json:
                print(json.dumps({"question": text[:200], "error": str(exc)}, ensure_ascii=False), flush=True)
            else:
                err.print(f"error: {exc}", markup=False)
            continue
        if as_json:
            print(json.dumps(answer.to_dict(), ensure_ascii=False), flush=True)
        else:
            out.print(answer_terminal(answer))
    if failed and question != "-":
        raise typer.Exit(2)


@app.command()
def chat() -> None:
    """Chat in the terminal (works with piped stdin too)."""
    from bot.adapters.console import run_chat

    _load_index(err)
    raise typer.Exit(run_chat(state.briefing, sys.stdin, Console(highlight=False)))


@app.command()
def index() -> None:
    """(Re)build the index of the configured sources, embedding only what changed."""
    from bot.adapters.console import sources_rows
    from bot.render.terminal import sources_table

    _load_index(err)
    Console().print(sources_table(sources_rows(state.briefing)))


@app.command(name="eval")
def eval_(
    file: Annotated[Path, typer.Argument(help="A JSONL question set (id, lang, question, gold).")],
    show_misses: Annotated[bool, typer.Option("--misses", help="List the ids answered wrongly.")] = False,
) -> None:
    """Measure answer quality on a question set."""
    from bot.evaluate import evaluate, read_cases

    if not file.is_file():
        raise InputError(f"no such question set: {file}")
    cases = list(read_cases(file))
    _load_index(err)
    state.briefing.ask("warm-up")  # load the model outside the timed questions
    report = evaluate(cases, state.briefing.ask, state.briefing.index)
    out = Console()
    for key, value in report.summary().items():
        out.print(f"{key:>20}: {value}", highlight=False)
    if show_misses:
        out.print(f"{'misses':>20}: {' '.join(report.misses) or '-'}", highlight=False)


def main() -> None:
    """Entry point: run the app, turning Briefbot's errors into one-line messages."""
    try:
        app()  # standalone: usage errors and exits are handled by typer
    except BriefbotError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(2 if isinstance(exc, InputError) else 1)
    except KeyboardInterrupt:
        sys.exit(130)


run_app = typer.Typer(help="Run Briefbot as a chat bot.", no_args_is_help=True)
app.add_typer(run_app, name="run")


@run_app.command("telegram")
def run_telegram(
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="Public HTTPS URL for a webhook (default: long polling).")
    ] = None,
    host: Annotated[str, typer.Option(help="Webhook mode: the address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Webhook mode: the port to listen on.")] = 8080,
) -> None:
    """Serve Telegram with TELEGRAM_BOT_TOKEN (TELEGRAM_API_BASE for another Bot API server)."""
    from bot.adapters.telegram_run import check_config, run

    check_config(state.settings)
    _load_index(err)
    run(state.briefing, webhook=webhook, host=host, port=port)


@app.command()
def digest(
    preview: Annotated[bool, typer.Option("--preview", help="Print what a new subscriber would get now.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: {sections: [...]}.")] = False,
) -> None:
    """Digests of the sources; scheduled ones are sent by `briefbot run telegram` (docs/digests.md)."""
    from bot.digest import digest_plain
    from bot.digest import preview as preview_digest

    if not preview:
        raise InputError("use --preview to see the digest a subscriber would get now")
    _load_index(err)
    settings = state.settings
    result = preview_digest(state.briefing.index, settings.digest_quotes_per_source, settings.digest_max_chars)
    if as_json:
        sections = result.to_dict()["sections"] if result else []
        print(json.dumps({"sections": sections}, ensure_ascii=False, indent=2))
    else:
        Console().print(digest_plain(result) if result else "Nothing to digest.", markup=False, highlight=False)


@run_app.command("discord")
def run_discord() -> None:
    """Serve Discord with DISCORD_BOT_TOKEN: slash commands, and answers to mentions."""
    from bot.adapters.discord import check_config, run

    check_config(state.settings)
    _load_index(err)
    run(state.briefing)
