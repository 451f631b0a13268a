"""mentor-mailer's benchmark suite (issue 7): how fast a real run goes, against what Python itself can do.

    python benchmarks/run.py                  # N = 10,000 pairs, median of 3 repetitions
    python benchmarks/run.py --quick          # N = 1,000, and the year rehearsal only once
    python benchmarks/run.py --quick --pairs 200 --repeat 1
    python benchmarks/run.py --quick --skip-scale    # without cases 7-9 (a year's ledger at S and 4·S pairs)
    python benchmarks/run.py --profile        # and then case 1 once more under cProfile
    python benchmarks/run.py --profile-only   # only the cProfile run of case 1
    python benchmarks/run.py --profile 3 --profile-only    # the meetup run under cProfile

It writes a synthetic program of N pairs over 4 cohorts (the sample's templates and program.toml;
cohorts shaped like the sample's 2019-2020 with both conferences; rosters of realistic names, many
non-ASCII) into a work folder, starts `benchmarks/sink.py` (a fast SMTP sink) in its own process,
and times each case as a child process, median of R repetitions:

1. monthly run: `mentor-mailer run --now 2019-09-01T18:00:00Z` over SMTP to the sink, ledger and all,
   on a copy of a ledger settled by a run the day before: exactly one step (day-in-the-life) is due,
   N messages, each To: both partners;
2. baseline: a bare stdlib loop (`benchmarks/clients.py baseline`) that builds the same N messages with
   `email.message.EmailMessage`, with case 1's own text and HTML, and sends them with smtplib over
   one connection;
3. meetup run: case 1 for meetup-midwinter-2020 (due 2019-12-20): every message carries an .ics;
4. no-op rerun: case 1 again on the ledger case 1 left: nothing is due;
5. year rehearsal: `mentor-mailer rehearse --outbox DIR` of the whole year for N pairs;
6. startup: `mentor-mailer --help` against `python -c pass`;
7-9. scale (benchmarks/scale.py): `status`, `report` over a year's ledger, and a run after the
   invitations, each at S and 4·S pairs, with the ratio of the two (--skip-scale leaves them out).

Two reference rows measure the sink and SMTP themselves with case 1's message as pre-built bytes:
pipelined raw-socket writes (the sink's ceiling) and smtplib `sendmail` in lock-step.

Wall time is from spawning the child to reaping it; peak RSS is that child's own `ru_maxrss`
from `os.wait4` (Linux reports KiB). Both are taken by `benchmarks/launch.py`, a tiny parent for each
measured child: spawned straight from this driver, a child would inherit the driver's RSS high-water
mark (exec keeps the larger of the old image's peak and the new one's).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

if __package__:
    from benchmarks import scale
else:  # run as a script: benchmarks/ itself is on sys.path
    import scale  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SAMPLE = REPO  # the sample program: its templates/ and cohorts/program.toml

# Every cohort below sends at 12:00-13:00 UTC on 2019-09-01 and 13:00-14:00 UTC on 2019-12-20, so a run
# the day before settles every earlier step (recorded as skipped: past the 14-day window) and a run at
# 18:00 UTC on the day finds exactly one step due for every pair, 09:00 having passed in every
# participant's zone (Los Angeles is the westernmost in the roster).
MONTHLY_SETTLE, MONTHLY_NOW = "2019-08-31T12:00:00Z", "2019-09-01T18:00:00Z"
MEETUP_SETTLE, MEETUP_NOW = "2019-12-19T12:00:00Z", "2019-12-20T18:00:00Z"
RSS_REFERENCE_PAIRS = 1000

CASES = {
    "1": "1. monthly run (day-in-the-life)",
    "2": "2. baseline: EmailMessage + smtplib",
    "3": "3. meetup run (with .ics)",
    "4": "4. no-op rerun",
    "5": "5. year rehearsal (Maildir)",
    "6": "6. startup: mentor-mailer --help",
    "6ref": "   reference: python -c pass",
    "1k": "1. monthly run at 1,000 pairs (RSS)",
    "pipe": "sink ceiling: pipelined raw socket",
    "lock": "smtplib lock-step, pre-built bytes",
    **scale.LABELS,
}

# (cohort id, name, IANA zone, send hour, coordinator); all at UTC-4 or UTC-3 in September, see above
COHORTS = [
    ("2019-2020-east", "Mentoring Program 2019–2020, East", "America/New_York", 9, "Laura Whitfield"),
    ("2019-2020-central", "Mentoring Program 2019–2020, Central", "America/Chicago", 8, "Marcus Delgado"),
    ("2019-2020-lakes", "Mentoring Program 2019–2020, Great Lakes", "America/Toronto", 9, "Geneviève Tremblay"),
    ("2019-2020-atlantic", "Mentoring Program 2019–2020, Atlantic", "America/Halifax", 9, "Siobhán Ó Briain"),
]

# the sample cohort's conferences and meetups, as the sample has them (not a copy that can drift)
_SAMPLE = (REPO / "cohorts" / "2019-2020" / "cohort.toml").read_text(encoding="utf-8")
SAMPLE_CONFERENCES = _SAMPLE[_SAMPLE.index("[[conferences]]"):]

COHORT_TOML = """\
# Generated by benchmarks/run.py, shaped like the sample's 2019-2020 cohort.
name = "{name}"
start = 2019-08-01
end = 2020-07-31
timezone = "{tz}"
send_hour = {hour}

[coordinator]
name = "{coordinator}"
email = "mentoring@example.org"

[evaluations]
midyear = "https://example.org/mentoring/{id}/midyear"
final = "https://example.org/mentoring/{id}/final"

{conferences}"""

# (as written in the roster, as it goes into an address)
GIVEN = [
    ("Renée", "renee"), ("José", "jose"), ("Zoë", "zoe"), ("Łukasz", "lukasz"), ("Søren", "soren"),
    ("Dagný", "dagny"), ("Noémie", "noemie"), ("Tomás", "tomas"), ("Björn", "bjorn"), ("Ángela", "angela"),
    ("Chloé", "chloe"), ("François", "francois"), ("Jürgen", "jurgen"), ("Małgorzata", "malgorzata"),
    ("Siobhán", "siobhan"), ("İlkay", "ilkay"), ("Žaneta", "zaneta"), ("Ana María", "anamaria"),
    ("Thảo", "thao"), ("Priya", "priya"), ("Olumide", "olumide"), ("Hannah", "hannah"),
    ("Margaret", "margaret"), ("Kwame", "kwame"), ("Mei", "mei"), ("Hiroshi", "hiroshi"),
    ("Fatima", "fatima"), ("Mohammed", "mohammed"), ("Oksana", "oksana"), ("Дмитрий", "dmitriy"),
    ("Αλέξανδρος", "alexandros"), ("David", "david"), ("Sarah", "sarah"), ("Michael", "michael"),
    ("Jennifer", "jennifer"), ("Emily", "emily"), ("James", "james"), ("Aiyana", "aiyana"),
    ("Nuno", "nuno"), ("Inés", "ines"),
]
FAMILY = [
    ("Côté", "cote"), ("Muñoz", "munoz"), ("Jónsdóttir", "jonsdottir"), ("Ng", "ng"), ("Okafor", "okafor"),
    ("Wójcik", "wojcik"), ("Østergaard", "ostergaard"), ("Raman", "raman"), ("Adeyemi", "adeyemi"),
    ("Schmidt", "schmidt"), ("Girard", "girard"), ("Ortega", "ortega"), ("O'Brien", "obrien"),
    ("García Márquez", "garciamarquez"), ("Nguyễn", "nguyen"), ("Müller", "muller"), ("Kowalczyk", "kowalczyk"),
    ("Dubois", "dubois"), ("Ångström", "angstrom"), ("Şahin", "sahin"), ("Dvořák", "dvorak"),
    ("Smith", "smith"), ("Johnson", "johnson"), ("Williams", "williams"), ("Hernández", "hernandez"),
    ("Lefèvre", "lefevre"), ("Papadopoulos", "papadopoulos"), ("Kim", "kim"), ("Tanaka", "tanaka"),
    ("Haddad", "haddad"), ("Mensah", "mensah"), ("Иванова", "ivanova"), ("Chen", "chen"),
    ("van der Berg", "vanderberg"), ("de la Cruz", "delacruz"), ("Smith-Jones", "smithjones"),
    ("Abubakar", "abubakar"), ("Lindqvist", "lindqvist"), ("Szabó", "szabo"), ("Çelik", "celik"),
]
DOMAINS = ["example.org", "example.com", "example.edu", "lib.example.net", "university.example"]
ZONES = ["America/Los_Angeles", "Europe/Warsaw", "America/Denver", "Asia/Tokyo", "Europe/Berlin"]
NOTES = ["Mentee works remotely from Kraków", "Prefers video calls", "Met at Midwinter 2019",
         "Mentor is on sabbatical in the spring; résumé review by email"]
ROSTER_HEADER = ["pair_id", "mentor_name", "mentor_email", "mentee_name", "mentee_email", "joined", "status",
                 "status_from", "status_until", "mentor_timezone", "mentee_timezone", "notes"]


class BenchError(Exception):
    """A case did not do what it must (wrong exit code, wrong count): its timing would mean nothing."""


# --- the synthetic program -----------------------------------------------------------------------

@dataclass
class Program:
    root: Path
    pairs: int
    people: list[tuple[str, str, str, str]] = field(default_factory=list)  # mentor, address, mentee, address


def make_program(root: Path, pairs: int, *, seed: int = 7) -> Program:
    """The sample's templates and steps, 4 cohorts like the sample's 2019-2020, N pairs split among them."""
    rng = random.Random(seed)
    if root.exists():
        shutil.rmtree(root)
    (root / "cohorts").mkdir(parents=True)
    shutil.copytree(SAMPLE / "templates", root / "templates")
    shutil.copyfile(SAMPLE / "cohorts" / "program.toml", root / "cohorts" / "program.toml")
    program = Program(root, pairs)
    per, extra = divmod(pairs, len(COHORTS))
    person = 0

    def someone() -> tuple[str, str]:
        nonlocal person
        person += 1
        (g, ga), (f, fa) = rng.choice(GIVEN), rng.choice(FAMILY)
        return f"{g} {f}", f"{ga}.{fa}.{person}@{rng.choice(DOMAINS)}"

    for index, (cid, name, tz, hour, coordinator) in enumerate(COHORTS):
        folder = root / "cohorts" / cid
        folder.mkdir()
        (folder / "cohort.toml").write_text(
            COHORT_TOML.format(id=cid, name=name, tz=tz, hour=hour, coordinator=coordinator,
                               conferences=SAMPLE_CONFERENCES), encoding="utf-8")
        with (folder / "roster.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(ROSTER_HEADER)
            for n in range(per + (1 if index < extra else 0)):
                (mentor, mentor_addr), (mentee, mentee_addr) = someone(), someone()
                writer.writerow([
                    f"p{n + 1:05d}", mentor, mentor_addr, mentee, mentee_addr, "", "active", "", "",
                    rng.choice(ZONES) if rng.random() < 0.05 else "",
                    rng.choice(ZONES) if rng.random() < 0.15 else "",
                    rng.choice(NOTES) if rng.random() < 0.1 else "",
                ])
                program.people.append((mentor, mentor_addr, mentee, mentee_addr))
    return program


# --- child processes -----------------------------------------------------------------------------

@dataclass
class Sample:
    """One timed child process."""

    wall: float
    rss_kib: int
    messages: int = 0  # the messages the case is about (for the sink: those to both partners)
    bytes: int = 0
    others: int = 0  # other messages the sink got (the coordinator's digest after a run)


@dataclass
class Result:
    key: str
    samples: list[Sample]
    note: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(s.wall for s in self.samples)

    @property
    def rss_kib(self) -> float:
        return statistics.median(s.rss_kib for s in self.samples)

    @property
    def messages(self) -> int:
        return self.samples[0].messages

    @property
    def bytes_per_message(self) -> float | None:
        s = self.samples[0]
        return s.bytes / s.messages if s.messages and s.bytes else None


@dataclass
class Done:
    code: int
    wall: float
    rss_kib: int
    stdout: str
    stderr: str


def launcher(result: Path, timeout: float) -> list[str]:
    """The prefix that runs a command under benchmarks/launch.py (see there for why)."""
    return [sys.executable, "-S", "-I", str(HERE / "launch.py"), str(result), str(timeout)]


def launched(result: Path) -> tuple[float, int, int]:
    wall, rss, code = result.read_text(encoding="ascii").split()
    return float(wall), int(rss), int(code)


class Runner:
    """Runs each measured child under the launcher, its output in files, and reads back its wall time,
    its own peak RSS and its exit code."""

    def __init__(self, logs: Path, timeout: float) -> None:
        self.logs = logs
        self.timeout = timeout
        self.count = 0
        logs.mkdir(parents=True, exist_ok=True)

    def __call__(self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 check: bool = True) -> Done:
        self.count += 1
        stem = self.logs / f"{self.count:04d}"
        out, err, result = stem.with_suffix(".out"), stem.with_suffix(".err"), stem.with_suffix(".result")
        with out.open("wb") as fo, err.open("wb") as fe:
            proc = subprocess.Popen([*launcher(result, self.timeout), *argv], env=env, cwd=cwd, stdout=fo,
                                    stderr=fe, stdin=subprocess.DEVNULL)
            try:
                proc.wait(timeout=self.timeout + 60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.returncode != 0 or not result.exists():
            raise BenchError(f"the launcher for {' '.join(map(str, argv))} exited {proc.returncode}: "
                             f"{err.read_text('utf-8', 'replace')[-2000:]}")
        wall, rss, code = launched(result)
        done = Done(code, wall, rss, out.read_text("utf-8", "replace"), err.read_text("utf-8", "replace"))
        if check and done.code != 0:
            raise BenchError(f"{' '.join(map(str, argv))} exited {done.code}:\n{done.stdout[-2000:]}"
                             f"{done.stderr[-4000:]}")
        return done


class Sink:
    """benchmarks/sink.py in its own process (under the launcher, for its RSS), and its control commands."""

    def __init__(self, work: Path) -> None:
        self.result = work / "sink.result"
        self.proc = subprocess.Popen([*launcher(self.result, 24 * 3600), sys.executable, str(HERE / "sink.py"),
                                      "--port", "0"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        if not line.startswith("port "):
            self.proc.kill()
            raise BenchError(f"the sink did not start: {line!r}")
        self.port = int(line.split()[1])
        self.rss_kib = 0

    def command(self, cmd: str) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock, sock.makefile("rb") as f:
            f.readline()
            sock.sendall(cmd.encode() + b"\r\nQUIT\r\n")
            reply = f.readline().decode().strip()
            f.readline()
        if not reply.startswith("250"):
            raise BenchError(f"sink: {cmd}: {reply}")
        return reply

    def reset(self) -> None:
        self.command("XRESET")

    def stats(self) -> dict[str, int]:
        reply = self.command("XSTAT")
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", reply)}

    def dump(self, path: Path, recipients: int = 2) -> bytes:
        self.command(f"XDUMP {path} {recipients}")
        return path.read_bytes()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the launcher passes it on to the sink
            try:
                self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()
        if self.result.exists():
            self.rss_kib = launched(self.result)[1]


def mailer_argv() -> list[str]:
    """The installed console script beside this interpreter; `python -m mailer.cli` without one."""
    script = Path(sys.executable).parent / "mentor-mailer"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mailer.cli"]


def mailer_env(program: Path, database: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MENTOR_MAILER_")}
    env.update({
        "MENTOR_MAILER_PROGRAM_DIR": str(program),
        "MENTOR_MAILER_DATABASE": str(database),
        "MENTOR_MAILER_TRANSPORT": "smtp",
        "MENTOR_MAILER_SMTP_HOST": "127.0.0.1",
        "MENTOR_MAILER_SMTP_PORT": str(port),
        "MENTOR_MAILER_SMTP_SECURITY": "none",
    })
    return env


def remove_ledger(db: Path) -> None:
    for suffix in ("", "-wal", "-shm", ".lock"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(db) + suffix).unlink()


def copy_ledger(src: Path, dst: Path) -> None:
    """A ledger file with its WAL, if a run left one (a clean exit checkpoints and removes it)."""
    remove_ledger(dst)
    for suffix in ("", "-wal"):
        source = Path(str(src) + suffix)
        if source.exists():
            shutil.copyfile(source, Path(str(dst) + suffix))


def summary_counts(stdout: str) -> tuple[int, int]:
    found = re.search(r"sent (\d+), skipped (\d+), failed (\d+)", stdout)
    if not found:
        raise BenchError(f"no summary line in the run's output: {stdout[-500:]!r}")
    if int(found.group(3)):
        raise BenchError(f"the run failed messages: {stdout[-500:]!r}")
    return int(found.group(1)), int(found.group(2))


# --- the suite -----------------------------------------------------------------------------------

class Suite:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.n: int = args.pairs
        self.repeat: int = args.repeat
        self.run = Runner(work / "logs", timeout=args.timeout)
        self.ledgers = work / "ledgers"
        self.ledgers.mkdir(parents=True, exist_ok=True)
        self.samples = work / "samples"
        self.samples.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Result] = {}
        self.sink: Sink | None = None
        self.sample_message = b""
        self.sink_rss_kib = 0
        self.machine = machine_info()
        self.load_before = os.getloadavg()[0]

    def say(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # setup

    def settle(self, program: Program, now: str, name: str) -> Path:
        """A ledger holding everything before the measured step, recorded by one untimed run."""
        assert self.sink is not None
        db = self.ledgers / f"{name}.sqlite3"
        remove_ledger(db)
        # a fresh ledger in the middle of the year: confirmed, so the steps before `now` are recorded as skipped
        done = self.run([*mailer_argv(), "run", "--now", now, "--new-ledger"],
                        env=mailer_env(program.root, db, self.sink.port), cwd=self.work)
        sent, skipped = summary_counts(done.stdout)
        if sent:
            raise BenchError(f"settling at {now} sent {sent} messages; expected none")
        self.say(f"  settled {name} at {now}: {skipped} skipped ({done.wall:.1f} s)")
        return db

    # cases

    def mailer_run(self, key: str, program: Program, settled: Path, now: str, expect: int, repeat: int,
                   *, dump: Path | None = None) -> Path:
        """Time `mentor-mailer run --now NOW` on fresh copies of `settled`; check the sink got `expect`."""
        assert self.sink is not None
        samples = []
        db = settled
        for i in range(repeat):
            db = self.ledgers / f"case-{key}-{i}.sqlite3"
            copy_ledger(settled, db)
            self.sink.reset()
            done = self.run([*mailer_argv(), "run", "--now", now], env=mailer_env(program.root, db, self.sink.port),
                            cwd=self.work)
            sent, _ = summary_counts(done.stdout)
            stats = self.sink.stats()
            pair_msgs = stats.get("m2", 0)
            others = stats["messages"] - pair_msgs
            # besides the N messages to both partners, a run that did something mails each coordinator a
            # digest (one recipient); nothing else may reach the sink
            if sent != expect or pair_msgs != expect or others != stats.get("m1", 0) or others > len(COHORTS):
                raise BenchError(f"case {key}: expected {expect} messages to 2 recipients each; the run said sent "
                                 f"{sent}, the sink got {stats}")
            samples.append(Sample(done.wall, done.rss_kib, expect, stats.get("b2", 0), others))
            self.say(f"  {CASES[key]}: {done.wall:.2f} s, {done.rss_kib / 1024:.0f} MiB"
                     + (f" (+{others} digest)" if others else ""))
            if dump is not None and expect:
                self.sink.dump(dump)
        self.results[key] = Result(key, samples)
        return db

    def baseline(self, program: Program) -> None:
        assert self.sink is not None
        msg = BytesParser(policy=policy.default).parsebytes(self.sample_message)
        text = html = ""
        for part in msg.walk():
            if part.get_content_type() == "text/plain" and not text:
                text = part.get_content()  # type: ignore[attr-defined]
            elif part.get_content_type() == "text/html" and not html:
                html = part.get_content()  # type: ignore[attr-defined]
        sender = msg["From"].addresses[0]
        spec = {"sender": [sender.display_name, sender.addr_spec], "subject": str(msg["Subject"]),
                "text": text, "html": html, "domain": sender.domain,
                "pairs": [list(p) for p in program.people]}
        spec_path = self.samples / "baseline-spec.json"
        spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        samples = []
        for _ in range(self.repeat):
            self.sink.reset()
            done = self.run([sys.executable, str(HERE / "clients.py"), "baseline", "--port", str(self.sink.port),
                             "--spec", str(spec_path)], cwd=self.work)
            stats = self.sink.stats()
            if stats["messages"] != self.n or stats.get("m2") != self.n:
                raise BenchError(f"baseline: the sink got {stats}, expected {self.n} messages")
            samples.append(Sample(done.wall, done.rss_kib, self.n, stats["b2"]))
            self.say(f"  {CASES['2']}: {done.wall:.2f} s")
        self.results["2"] = Result("2", samples, note=f"text {len(text)} chars, HTML {len(html)} chars, as case 1")

    def prebuilt(self, key: str, mode: str) -> None:
        assert self.sink is not None
        message = self.samples / "case1-message.eml"
        msg = BytesParser(policy=policy.default).parsebytes(self.sample_message, headersonly=True)
        rcpts = [a.addr_spec for a in msg["To"].addresses]
        sender = msg["From"].addresses[0].addr_spec
        samples = []
        for _ in range(self.repeat):
            self.sink.reset()
            done = self.run([sys.executable, str(HERE / "clients.py"), mode, "--port", str(self.sink.port),
                             "--message", str(message), "--count", str(self.n), "--sender", sender,
                             *[x for r in rcpts for x in ("--rcpt", r)]], cwd=self.work)
            stats = self.sink.stats()
            if stats["messages"] != self.n or stats.get("m2") != self.n:
                raise BenchError(f"{mode}: the sink got {stats}, expected {self.n} messages")
            samples.append(Sample(done.wall, done.rss_kib, self.n, stats["b2"]))
            self.say(f"  {CASES[key]}: {done.wall:.2f} s")
        self.results[key] = Result(key, samples)

    def rehearsal(self, program: Program) -> None:
        assert self.sink is not None
        outbox = self.work / "rehearsal"
        samples = []
        for _ in range(self.args.rehearsal_repeat):
            if outbox.exists():
                shutil.rmtree(outbox)
            env = mailer_env(program.root, self.ledgers / "rehearsal-unused.sqlite3", self.sink.port)
            env["MENTOR_MAILER_TRANSPORT"] = "outbox"
            done = self.run([*mailer_argv(), "rehearse", "--outbox", str(outbox)], env=env, cwd=self.work)
            found = re.search(r"rehearsed: (\d+) message", done.stdout)
            files = size = 0
            with os.scandir(outbox / "new") as entries:
                for entry in entries:
                    files += 1
                    size += entry.stat().st_size
            if not found or int(found.group(1)) != files or not files:
                raise BenchError(f"rehearsal: said {found and found.group(0)!r}, wrote {files} files")
            samples.append(Sample(done.wall, done.rss_kib, files, size))
            self.say(f"  {CASES['5']}: {done.wall:.2f} s, {done.rss_kib / 1024:.0f} MiB, {files} messages")
        shutil.rmtree(outbox)
        self.results["5"] = Result("5", samples, note="bytes/msg: LF line ends on disk")

    def startup(self) -> None:
        helps, passes = [], []
        for _ in range(self.args.startup_repeat):
            done = self.run([*mailer_argv(), "--help"], cwd=self.work)
            helps.append(Sample(done.wall, done.rss_kib))
            done = self.run([sys.executable, "-c", "pass"], cwd=self.work)
            passes.append(Sample(done.wall, done.rss_kib))
        self.results["6"] = Result("6", helps)
        self.results["6ref"] = Result("6ref", passes)
        self.say(f"  {CASES['6']}: {self.results['6'].wall * 1000:.0f} ms; "
                 f"python -c pass: {self.results['6ref'].wall * 1000:.0f} ms")

    def profile(self, program: Program, case: str) -> None:
        """Case 1 (or 3) once under cProfile: where the time goes, then the top functions."""
        import pstats

        assert self.sink is not None
        settle_at, now = (MONTHLY_SETTLE, MONTHLY_NOW) if case == "1" else (MEETUP_SETTLE, MEETUP_NOW)
        settled = self.ledgers / ("settled-monthly.sqlite3" if case == "1" else "settled-meetup.sqlite3")
        if not settled.exists():
            settled = self.settle(program, settle_at, settled.stem)
        db = self.ledgers / f"profile-case{case}.sqlite3"
        copy_ledger(settled, db)
        prof = self.work / f"case{case}.prof"
        self.sink.reset()
        done = self.run([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "mailer.cli", "run",
                         "--now", now], env=mailer_env(program.root, db, self.sink.port), cwd=self.work)
        sent, _ = summary_counts(done.stdout)
        if sent != self.n or self.sink.stats().get("m2") != self.n:
            raise BenchError(f"profile run sent {sent}, expected {self.n}")
        print()
        print(f"== case {case} ({CASES[case][3:]}) under cProfile: {self.n:,} messages in {done.wall:.2f} s wall "
              f"(profiler overhead included); {prof}")
        print_breakdown(prof, self.n)
        stats = pstats.Stats(str(prof), stream=sys.stdout)
        stats.strip_dirs().sort_stats("cumulative").print_stats(25)
        print("-- the same run, top 15 by own time (tottime)")
        stats.sort_stats("tottime").print_stats(15)
        sys.stdout.flush()


# profile breakdown: (label, [(file suffix, function)]); a function's time when called from the digest
# is the digest's, and SMTP's time excludes the ledger's mark_body (called just before each body)
_DIGEST = ("mailer/app/digests.py", "send_digests")
_WRITES = ("claim", "mark_body", "finish", "skip", "record_invite", "start_run", "finish_run", "recover")
BREAKDOWN: list[tuple[str, list[tuple[str, str]]]] = [
    ("load program (TOML, roster, address checks)", [("mailer/load/program.py", "load_program")]),
    ("plan (year schedule, due, settled keys)", [("mailer/core/plan.py", "build_plan"),
                                                ("mailer/shell/ledger.py", "snapshot")]),
    ("render (Jinja2 text + HTML, context)", [("mailer/core/render.py", "render"),
                                              ("mailer/core/compose.py", "context")]),
    ("MIME build (compose.build_message)", [("mailer/core/compose.py", "build_message")]),
    ("invitation (.ics) build", [("mailer/core/invitation.py", "build_invite"), ("mailer/core/ical.py", "build_ics")]),
    ("SQLite writes (claim, mark_body, finish, skip, ...): 1 commit each",
     [("mailer/shell/ledger.py", f) for f in _WRITES]),
    ("SMTP (smtplib round trips; without mark_body)", [("mailer/shell/smtp.py", "send")]),
    ("coordinator digest (its own plan, ledger scan, send)", [_DIGEST]),
]


def print_breakdown(prof: Path, messages: int) -> None:
    """Cumulative time of the pipeline's stages, from the profile (best effort: names may change)."""
    import pstats

    raw: dict[Any, Any] = pstats.Stats(str(prof)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())

    def entries(path: str, func: str) -> list[tuple[Any, Any]]:
        return [(k, v) for k, v in raw.items() if k[2] == func and k[0].replace(os.sep, "/").endswith(path)]

    def from_caller(value: Any, caller: tuple[str, str]) -> tuple[float, int]:
        t = n = 0
        for (file, _, name), stats in value[4].items():
            if name == caller[1] and file.replace(os.sep, "/").endswith(caller[0]):
                t, n = t + stats[3], n + stats[1]
        return t, n

    def cum(path: str, func: str) -> tuple[float, int]:
        """Cumulative seconds and calls, leaving out calls from the digest (it has its own row)."""
        t = n = 0
        for _, value in entries(path, func):
            if (path, func) == _DIGEST:
                return value[3], value[1]
            dt, dn = from_caller(value, _DIGEST)
            t, n = t + value[3] - dt, n + value[1] - dn
        return t, n

    mark_body = cum("mailer/shell/ledger.py", "mark_body")[0]  # called back from inside SmtpTransport.send
    print(f"-- where the time goes (cumulative seconds under the profiler; total {total:.2f} s)")
    accounted = 0.0
    for label, funcs in BREAKDOWN:
        t = sum(cum(p, f)[0] for p, f in funcs)
        if label.startswith("SMTP"):
            t -= mark_body
        accounted += t
        print(f"   {label:<66} {t:8.2f} s  {100 * t / total:5.1f} %  {1e6 * t / messages:8.0f} µs/msg")
    rest = total - accounted
    print(f"   {'everything else (imports, startup, settings, report, gc)':<66} {rest:8.2f} s  "
          f"{100 * rest / total:5.1f} %")
    commits = sum(cum("mailer/shell/ledger.py", f)[1] for f in _WRITES)
    replies = sum(v[1] for (file, _, name), v in raw.items() if name == "getreply" and "smtplib" in file)
    sends = sum(v[1] for (_, _, name), v in raw.items() if "'sendall'" in name)
    renders = cum("mailer/core/render.py", "render")[1]
    print(f"   counts: {commits:,} ledger commits ({commits / messages:.1f}/msg), {replies:,} SMTP replies awaited "
          f"and {sends:,} socket writes ({replies / messages:.1f} and {sends / messages:.1f}/msg), "
          f"{renders:,} renders")


# --- report --------------------------------------------------------------------------------------

def machine_info() -> list[str]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "mailer"], cwd=REPO, capture_output=True,
                               text=True, check=True, timeout=10).stdout.strip()
        commit = head + (" with uncommitted changes under mailer/" if dirty else "")
    return [
        f"machine: {os.cpu_count()} CPUs ({cpu or 'unknown CPU'}), {platform.system()} {platform.release()} "
        f"{platform.machine()}",
        f"python:  {platform.python_implementation()} {platform.python_version()} ({sys.executable})",
        f"code:    {REPO} at {commit}",
    ]


def verdict(value: float | None, target: float) -> str:
    if value is None:
        return "n/a"
    return "met" if value <= target else "MISSED"


def report(suite: Suite, elapsed: float) -> int:
    r = suite.results
    n = suite.n
    print(f"mentor-mailer benchmarks: N = {n:,} pairs in {len(COHORTS)} cohorts; each case the median of its reps")
    for line in suite.machine:
        print(line)
    print(f"load:    1-minute load average {suite.load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end "
          f"(a busy machine slows every case)")
    print()
    head = (f"{'case':<40} {'reps':>4} {'wall s':>8} {'min s':>8} {'max s':>8} {'messages':>9} {'msg/s':>9} "
            f"{'peak RSS MiB':>13} {'bytes/msg':>10}")
    print(head)
    print("-" * len(head))
    for key in ("1", "2", "3", "4", "5", "6", "6ref", "1k", "pipe", "lock", *scale.LABELS):
        res = r.get(key)
        if res is None:
            continue
        walls = [s.wall for s in res.samples]
        msgs = res.messages
        rate = f"{msgs / res.wall:9,.0f}" if msgs else f"{'–':>9}"
        bpm = res.bytes_per_message
        print(f"{CASES[key]:<40} {len(walls):4d} {res.wall:8.3f} {min(walls):8.3f} {max(walls):8.3f} "
              f"{(f'{msgs:,}' if msgs else '–'):>9} {rate} {res.rss_kib / 1024:13.1f} "
              f"{(f'{bpm:,.0f}' if bpm else '–'):>10}")
    print()
    print("notes: wall = spawn to reap of the measured child; peak RSS = that child's ru_maxrss (KiB on Linux),")
    print("       both taken by benchmarks/launch.py, a tiny parent that keeps the driver's memory out of it;")
    print("       bytes/msg as the sink counted them (case 5: .eml files on disk). Reference rows send case 1's")
    print("       message as pre-built bytes: 'pipelined' writes MAIL/RCPT/DATA/body for 64 messages at a time")
    print("       to a raw socket without waiting for replies (a reader thread checks them); 'lock-step' is")
    print(f"       smtplib.sendmail, one round trip per command. The sink's own peak RSS: "
          f"{suite.sink_rss_kib / 1024:.1f} MiB.")
    if "2" in r:
        print(f"       case 2 bodies: {r['2'].note}.")
    digests = {CASES[k].split(" (")[0]: r[k].samples[0].others for k in ("1", "3") if k in r and r[k].samples[0].others}
    if digests:
        print("       besides its N messages, each run of " + " and ".join(f"'{k}'" for k in digests))
        print("       also mailed the coordinator a digest (1 recipient: checked, not counted above).")
    print()

    def ratio(a: str, b: str) -> float | None:
        return r[a].wall / r[b].wall if a in r and b in r and r[b].wall else None

    rss_ratio = None
    if "1k" in r and "1" in r:
        rss_ratio = r["1"].rss_kib / r["1k"].rss_kib
    rows: list[tuple[str, float | None, float, str]] = [
        ("ratio case 1 / case 2 (monthly run vs bare stdlib loop)", ratio("1", "2"), 1.0, ""),
        ("ratio case 3 / case 1 (meetup run vs monthly run)", ratio("3", "1"), 1.3, ""),
        ("ratio case 4 / case 1 (no-op rerun vs monthly run)", ratio("4", "1"), 0.05, ""),
        ("ratio case 6 (mentor-mailer --help vs python -c pass)", ratio("6", "6ref"), 10.0, ""),
        (f"ratio peak RSS case 1 at N vs at {RSS_REFERENCE_PAIRS:,}", rss_ratio, 1.5,
         "" if rss_ratio is not None else f"(N ≤ {RSS_REFERENCE_PAIRS:,}: nothing to compare)"),
        *scale.ratio_rows(r),
    ]
    missed = 0
    for label, value, target, why in rows:
        shown = f"{value:8.3f}" if value is not None else f"{'–':>8}"
        mark = verdict(value, target)
        missed += mark == "MISSED"
        print(f"{label:<60} {shown}   target ≤ {target:<5g} {mark} {why}".rstrip())
    print()
    print(f"targets met: {sum(verdict(v, t) == 'met' for _, v, t, _ in rows)} of {len(rows)}; "
          f"suite took {elapsed:.0f} s")
    return missed


def run_suite(args: argparse.Namespace, work: Path) -> int:
    started = time.perf_counter()
    suite = Suite(args, work)
    n = suite.n
    suite.say(f"benchmarks: N = {n:,}, repeat {suite.repeat}, work folder {work}")
    suite.say(f"  writing the program: {n:,} pairs")
    program = make_program(work / f"program-{n}", n)
    suite.sink = Sink(work)
    try:
        suite.run([*mailer_argv(), "--version"])
        if args.profile_only:
            suite.profile(program, args.profile or "1")
            return 0
        monthly = suite.settle(program, MONTHLY_SETTLE, "settled-monthly")
        if not args.skip_startup:
            suite.startup()
        sample = suite.samples / "case1-message.eml"
        last = suite.mailer_run("1", program, monthly, MONTHLY_NOW, n, suite.repeat, dump=sample)
        suite.sample_message = sample.read_bytes()
        suite.baseline(program)
        suite.prebuilt("pipe", "pipelined")
        suite.prebuilt("lock", "smtplib")
        meetup = suite.settle(program, MEETUP_SETTLE, "settled-meetup")
        suite.mailer_run("3", program, meetup, MEETUP_NOW, n, suite.repeat,
                         dump=suite.samples / "case3-message.eml")
        suite.mailer_run("4", program, last, MONTHLY_NOW, 0, suite.repeat)
        if not args.skip_rehearsal:
            suite.rehearsal(program)
        if not args.skip_scale:
            scale.run_scale(suite, sys.modules[__name__], args.scale_pairs)
        if n > RSS_REFERENCE_PAIRS:
            small = make_program(work / f"program-{RSS_REFERENCE_PAIRS}", RSS_REFERENCE_PAIRS)
            settled = suite.settle(small, MONTHLY_SETTLE, "settled-monthly-1000")
            suite.mailer_run("1k", small, settled, MONTHLY_NOW, RSS_REFERENCE_PAIRS, 1)
        suite.sink.stop()
        suite.sink_rss_kib = suite.sink.rss_kib
        missed = report(suite, time.perf_counter() - started)
        (work / "results.json").write_text(json.dumps(
            {"pairs": n, "repeat": suite.repeat, "machine": suite.machine,
             "cases": {k: {"name": CASES[k], "samples": [asdict(s) for s in v.samples]}
                       for k, v in suite.results.items()}}, indent=2, ensure_ascii=False), encoding="utf-8")
        if args.profile:
            suite.sink = Sink(work)
            suite.profile(program, args.profile)
        return 0 if missed == 0 or not args.strict else 3
    finally:
        if suite.sink is not None:
            suite.sink.stop()


@contextlib.contextmanager
def work_folder(out: Path | None) -> Iterator[Path]:
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        yield out.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="mentor-mailer-bench-") as tmp:
        yield Path(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mentor-mailer's benchmark suite (issue 7)",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--pairs", type=int, metavar="N", help="pairs in the synthetic program (default 10,000; "
                                                              "with --quick 1,000); takes precedence over --quick")
    parser.add_argument("--quick", action="store_true", help="N = 1,000 unless --pairs says otherwise, and case 5 "
                                                             "once unless --rehearsal-repeat says otherwise")
    parser.add_argument("--repeat", type=int, default=3, metavar="R", help="repetitions per case; the median "
                                                                          "is reported (default 3)")
    parser.add_argument("--startup-repeat", type=int, default=20, metavar="R",
                        help="repetitions for case 6 (default 20)")
    parser.add_argument("--rehearsal-repeat", type=int, metavar="R",
                        help="repetitions for case 5, the slowest (default: --repeat; with --quick, 1)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="keep the work folder (program, ledgers, logs, "
                                                               "results.json, the profile) here; default: a "
                                                               "temporary folder, removed afterwards")
    parser.add_argument("--profile", nargs="?", const="1", choices=("1", "3"), metavar="CASE",
                        help="after the suite, run case 1 (or 3) once under cProfile: print where the time goes "
                             "and the top 25 functions by cumulative time")
    parser.add_argument("--profile-only", action="store_true", help="only the cProfile run (of case 1, or of "
                                                                   "--profile's case)")
    parser.add_argument("--skip-rehearsal", action="store_true", help="leave out case 5 (the slowest)")
    parser.add_argument("--skip-startup", action="store_true", help="leave out case 6")
    parser.add_argument("--scale-pairs", type=int, metavar="S",
                        help=f"cases 7-9 at S and {scale.FACTOR}·S pairs (default: N, so 10,000 and 40,000, or "
                             "1,000 and 4,000 with --quick)")
    parser.add_argument("--skip-scale", action="store_true", help="leave out cases 7-9 (a year's ledger at "
                                                                 f"S and {scale.FACTOR}·S pairs takes a while)")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    parser.add_argument("--timeout", type=float, default=3600, metavar="S",
                        help="kill a measured child after S seconds (default 3600)")
    args = parser.parse_args(argv)
    if args.pairs is None:
        args.pairs = 1000 if args.quick else 10_000
    if args.scale_pairs is None:
        args.scale_pairs = args.pairs
    if args.rehearsal_repeat is None:
        args.rehearsal_repeat = 1 if args.quick else args.repeat
    repeats = (args.repeat, args.startup_repeat, args.rehearsal_repeat)
    if min(args.pairs, args.scale_pairs) < len(COHORTS) or min(repeats) < 1:
        parser.error(f"--pairs and --scale-pairs must be at least {len(COHORTS)}, each --*repeat at least 1")
    try:
        with work_folder(args.out) as work:
            return run_suite(args, work)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
