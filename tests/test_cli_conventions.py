"""The command line's conventions: help for every option with its default, plain `mentor-mailer` helps, dates
for --now, refused option mixes, ordinary path mistakes in one sentence, a closed pipe, check --smtp."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from mailer.cli import build_parser, main
from tests.smtpd import SMTP_PASSWORD, SMTP_USER, MakeSmtpServer, SmtpServer


def subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices  # type: ignore[return-value]


@pytest.mark.parametrize("name", list(subcommands()))
def test_every_option_has_help_saying_its_default(name: str) -> None:
    for action in subcommands()[name]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, (name, action.dest)
        flag = action.const is True and action.default is False  # a switch: off unless given
        assert flag or action.required or "default" in action.help or not action.option_strings, (name, action.dest)


def test_plain_mentor_mailer_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: mentor-mailer") and "init" in out and "units" in out


def test_cohort_is_repeatable_wherever_it_is_taken() -> None:
    for name, p in subcommands().items():
        for action in p._actions:
            if action.dest == "cohort" and name != "preview":  # preview names one message
                assert isinstance(action, argparse._AppendAction), name


def test_run_now_takes_a_date_as_midnight_in_the_programs_zone(program_dir: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    args = ["-C", str(program_dir), "run", "--dry-run"]
    assert main([*args, "--now", "2019-08-01"]) == 0  # midnight in New York: the 09:00 welcome is not due yet
    assert "would send 0" in capsys.readouterr().out
    assert main([*args, "--now", "2019-08-02"]) == 0
    assert "would send 11" in capsys.readouterr().out


def test_plan_from_after_to_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plan", "--from", "2020-01-02", "--to", "2020-01-01"])
    assert exc.value.code == 2 and "--from 2020-01-02 is after --to 2020-01-01" in capsys.readouterr().err


def test_preview_roles_and_pairs(program_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["-C", str(program_dir), "preview", "--pair"]
    assert main([*base, "p01", "--step", "welcome", "--role", "mentor"]) == 2
    assert "goes to both partners in one email; leave out --role" in capsys.readouterr().err
    assert main([*base, "p01", "--step", "midyear"]) == 0
    both = capsys.readouterr().out
    assert "===== to the mentor: Renée Côté" in both and "===== to the mentee: José Muñoz" in both
    assert main([*base, "zz", "--step", "welcome"]) == 2
    assert "there is no pair 'zz'; pairs are: j01" in capsys.readouterr().err


@pytest.mark.parametrize(("args", "said"), [
    (["invites", "--cohort", "2019-2020", "--out", "{file}"], "--out {file} is a file; give a folder"),
    (["report", "--out", "{dir}"], "--out {dir} is a folder; give a file name"),
    (["report", "--out", "{missing}/r.html"], "the folder {missing} does not exist; create it first"),
    (["rehearse", "--outbox", "{file}"], "--outbox {file} is a file; give a folder"),
    (["report", "--out", "/proc/r.html"], "/proc/r.html: files cannot be created in /proc; choose another folder"),
])
def test_ordinary_path_mistakes_are_one_sentence(program_dir: Path, tmp_path: Path, args: list[str], said: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    places = {"file": str(tmp_path / "a-file"), "dir": str(tmp_path), "missing": str(tmp_path / "no/such")}
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    assert main(["-C", str(program_dir), *[a.format(**places) for a in args]]) == 2
    err = capsys.readouterr().err
    assert said.format(**places) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "no").exists()  # nothing made on the way


class ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_ends_quietly(program_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`plan --csv | head`: the reader went away; no traceback, exit 0."""
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["-C", str(program_dir), "plan", "--csv", "--from", "2019-08-01", "--to", "2020-08-01"]) == 0


def test_check_smtp_logs_in_and_sends_nothing(program_dir: Path, smtp_server: SmtpServer, smtp_ca_file: Path,
                                             monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {"SMTP_HOST": smtp_server.host, "SMTP_PORT": str(smtp_server.port),
                        "SMTP_CA_FILE": str(smtp_ca_file), "SMTP_USERNAME": SMTP_USER,
                        "SMTP_PASSWORD": SMTP_PASSWORD}.items():
        monkeypatch.setenv(f"MENTOR_MAILER_{name}", value)
    assert main(["-C", str(program_dir), "check", "--smtp"]) == 0
    out = capsys.readouterr().out
    assert f"SMTP server {smtp_server.host}:{smtp_server.port}: connected, upgraded to TLS with STARTTLS, " \
           f"logged in as {SMTP_USER}; nothing was sent" in out
    assert SMTP_PASSWORD not in out
    assert smtp_server.logins == [SMTP_USER] and smtp_server.received == []


def test_check_smtp_names_the_ca_file_and_loopback_plaintext(program_dir: Path, make_smtp_server: MakeSmtpServer,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    server = make_smtp_server()
    monkeypatch.setenv("MENTOR_MAILER_SMTP_HOST", server.host)
    monkeypatch.setenv("MENTOR_MAILER_SMTP_PORT", str(server.port))
    assert main(["-C", str(program_dir), "check", "--smtp"]) == 2  # the test CA is not trusted
    err = capsys.readouterr().err
    assert "TLS with SMTP server" in err and "MENTOR_MAILER_SMTP_CA_FILE" in err
    assert "MENTOR_MAILER_SMTP_SECURITY=none" in err  # the server is on 127.0.0.1
    assert server.received == []
