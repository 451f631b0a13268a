"""Settings from the environment (prefix MENTOR_MAILER_) and a .env file, built once at the edge."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mailer.errors import ConfigError

ENV_PREFIX = "MENTOR_MAILER_"


class Settings(BaseSettings):
    """Everything a run needs to know that is not in the program folder itself."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    program_dir: Path = Field(default=Path("."), description="folder holding cohorts/ and templates/email/")
    database: Path | None = Field(
        default=None, description="the ledger; default mentor-mailer.sqlite3 in the program folder")
    transport: Literal["outbox", "smtp"] = "outbox"
    outbox_dir: Path | None = Field(default=None, description="Maildir folder; default outbox/ in the program folder")
    late_window_days: int = Field(
        default=14, ge=0, description="a step later than this is recorded as skipped, not sent")
    late_skip_limit: int = Field(
        default=5, ge=0, description="a run that would skip more than this many for lateness holds them back")

    digest: bool = Field(default=True, description="email the coordinator a digest after a run that did something")
    schedule: str = Field(default="0 9 * * *", description="serve: when to run, in crontab syntax")
    timezone: str | None = Field(
        default=None, description="serve: the schedule's time zone; default the first cohort's")

    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=30.0, gt=0, description="seconds each SMTP reply may take, in all")
    smtp_message_timeout: float = Field(
        default=300.0, gt=0,
        description="seconds one message may take in all, attempts included; past it, it waits for the next run")
    smtp_ca_file: Path | None = None
    smtp_rate: float = Field(default=0.0, ge=0, description="messages per minute; 0 means no limit")
    smtp_max_attempts: int = Field(default=3, ge=1)
    smtp_backoff: float = Field(default=5.0, ge=0, description="seconds before the 2nd attempt; doubles after")
    smtp_retry_minutes: int = Field(
        default=30, ge=1, description="a deferred message is tried again by runs this long after; doubles")

    inbox: str | None = Field(
        default=None, description="the mailbox to read: maildir:PATH or imaps://USER@HOST[:PORT]/FOLDER (imap:// for "
        "STARTTLS)")
    inbox_processed: str = Field(
        default="mentor-mailer/processed", description="where processed mail is moved; '/' separates levels")
    imap_password: SecretStr | None = None
    imap_ca_file: Path | None = Field(default=None, description="PEM of CAs to trust for the IMAP server")
    imap_timeout: float = Field(default=30.0, gt=0)
    checkins: bool = Field(default=True, description="end each monthly prompt with check-in links to the coordinator")
    unsubscribe_url: str | None = Field(
        default=None, description="https URL with {token}: a one-click unsubscribe (RFC 8058) besides the mailto")
    no_contact_days: int = Field(
        default=45, ge=1, description="a pair with no reply, RSVP or check-in for this long is flagged in the digest")
    oauth2_token_command: str | None = Field(
        default=None, description="a command printing an OAuth2 access token: IMAP (and SMTP) log in with XOAUTH2")

    @field_validator("unsubscribe_url")
    @classmethod
    def _one_click(cls, url: str | None) -> str | None:
        if url is not None and (not url.startswith("https://") or "{token}" not in url):
            raise ValueError("give an https:// URL with {token} where the token goes, e.g. "
                             "https://example.org/unsubscribe/{token}")
        return url

    @property
    def database_path(self) -> Path:
        return self._in_program(self.database or Path("mentor-mailer.sqlite3"))

    @property
    def outbox_path(self) -> Path:
        return self._in_program(self.outbox_dir or Path("outbox"))

    def _in_program(self, path: Path) -> Path:
        """A relative path is taken from the program folder, wherever mentor-mailer runs from: a cron job
        in another folder must find the same ledger, never start a new one."""
        return path if path.is_absolute() else self.program_dir / path


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment and .env files, turning pydantic's report into one ConfigError.

    Two .env files are read: the current folder's, then the program folder's (which wins), so
    `mentor-mailer -C /srv/mentoring run` from anywhere finds the program's own settings.
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        program_env = settings.program_dir / ".env"
        if program_env.is_file() and program_env.resolve() != Path(".env").resolve():
            settings = Settings(**overrides, _env_file=(".env", program_env))  # type: ignore[arg-type,call-arg]
        return settings
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = ENV_PREFIX + "_".join(str(p) for p in err["loc"]).upper()
            lines.append(f"setting {name}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None
