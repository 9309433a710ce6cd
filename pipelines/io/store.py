"""Exporter store (CONTRACT.md §3): one JSON file per exporter under `configs/exporters/`.

Writes go to a dot-prefixed temp file in the same folder, are fsynced, then renamed over the
final name, so a reader never sees a half-written exporter and a crash leaves at most an ignored
temp file. Create and update hold an exclusive file lock across read-check-write, so the
externalId uniqueness check holds between separate processes (CLI and HTTP server alike).
Nothing is cached: every call reads the folder again, so one process' write is visible to the next
call of another.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import posixpath
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from filelock import FileLock, Timeout

from pipelines.io.files import atomic_write
from pipelines.model.config import Exporter, ExporterBody, Home
from pipelines.model.errors import (
    BadRequestError,
    ConflictError,
    ContactExporterError,
    ErrorItem,
    InvalidInputError,
    NotFoundError,
    TransientError,
)
from pipelines.model.file_names import render_file_name
from pipelines.model.strict import parse
from pipelines.model.vocab import EXPORTER_ID

log = logging.getLogger(__name__)

ID_PATTERN = EXPORTER_ID
EXTERNAL_PREFIX = "ext-"
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
LOCK_NAME = ".lock"
LOCK_TIMEOUT_SECONDS = 30.0
_ID_ATTEMPTS = 20


class StoredExporterError(InvalidInputError):
    """An exporter file on disk fails validation (hand-edited or corrupted). Exit 2; HTTP 500,
    since the fault is in the server's store, not in the request."""

    http_status = 500


class DuplicateExternalIdError(ConflictError):
    """Another exporter already has this externalId. HTTP 409."""

    def __init__(self, external_id: str, other_id: str):
        self.errors = [
            ErrorItem("/externalId", f"externalId is already used by exporter {other_id}; choose another")
        ]
        super().__init__(f"externalId {external_id!r} is already used by exporter {other_id}")


class StaleExporterError(ConflictError):
    """The exporter changed since the client read it (If-Match or updatedAt differ). HTTP 412."""

    http_status = 412


READ_ONLY_KEYS = ("id", "createdAt", "updatedAt")


def exporter_version(exporter: Exporter) -> str:
    """A digest of the stored exporter: changes whenever any of its keys does (the HTTP ETag)."""
    canonical = json.dumps(exporter.public(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


class DuplicateRemoteNameError(ConflictError):
    """Another exporter already delivers files of this name to the same destination. HTTP 409."""

    def __init__(self, other_id: str, name: str):
        message = (
            f"exporter {other_id} already delivers {name!r} to the same SFTP destination; its file would be "
            "overwritten: use a fileNameTemplate with {exporterId} or another distinct part"
        )
        self.errors = [ErrorItem("/fileSettings/fileNameTemplate", message)]
        super().__init__(message)


def file_name_of(exporter: Exporter, day: date) -> str:
    return render_file_name(exporter.fileSettings.template, exporter.id, day, exporter.companyId)


@dataclass(frozen=True)
class Page:
    """One page of exporters, newest first, and whether pages exist on either side."""

    total: int
    data: list[Exporter]
    has_more_after: bool
    has_more_before: bool
    skipped: tuple[str, ...] = ()  # ids of stored files that could not be read (left out of total)

    @property
    def first_id(self) -> str | None:
        return self.data[0].id if self.data else None

    @property
    def last_id(self) -> str | None:
        return self.data[-1].id if self.data else None


def now_iso() -> str:
    """UTC now as ISO-8601 with microseconds and a `Z` suffix."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_exporter_id() -> str:
    """`CE-` + 8 uppercase base32 characters (40 random bits)."""
    return "CE-" + base64.b32encode(secrets.token_bytes(5)).decode("ascii")


def _sort_key(exporter: Exporter) -> tuple[str, str]:
    return (exporter.createdAt, exporter.id)


def _check_read_only(current: Exporter, given: dict[str, object], source: str) -> None:
    if "updatedAt" in given and given["updatedAt"] != current.updatedAt:
        raise StaleExporterError(
            f"exporter {current.id} was updated at {current.updatedAt}, after the updatedAt "
            f"{given['updatedAt']!r} sent: GET it again and reapply the change"
        )
    wrong = [
        ErrorItem(
            f"/{key}",
            f"{key} is set by the store ({getattr(current, key)!r}); send that value or leave it out",
        )
        for key in ("id", "createdAt")
        if key in given and given[key] != getattr(current, key)
    ]
    if wrong:
        raise InvalidInputError(source, wrong)


def _cursor_index(ids: list[str], cursor: str, path: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise BadRequestError(
            "arguments", [ErrorItem(path, f"no exporter with id {cursor!r}; a cursor is an exporter id")]
        ) from None


def load_exporter_file(path: Path) -> Exporter:
    """Read and validate one exporter file.

    Errors name the exporter (the file's stem) and the JSON path inside it, never the file system
    path: the message also goes back to HTTP clients.
    """
    source = f"stored exporter {path.stem}"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"exporter {path.stem!r} not found") from None
    except OSError as exc:
        raise StoredExporterError(source, [ErrorItem("", f"cannot be read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StoredExporterError(source, [ErrorItem("", f"not UTF-8 text: {exc.reason}")]) from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        reason = (
            f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
            if isinstance(exc, json.JSONDecodeError)
            else "nested too deeply"
        )
        raise StoredExporterError(source, [ErrorItem("", f"not valid JSON ({reason})")]) from None
    try:
        exporter = parse(Exporter, data, source)
    except InvalidInputError as exc:
        raise StoredExporterError(source, exc.errors) from None
    if not ID_PATTERN.fullmatch(exporter.id):
        raise StoredExporterError(
            source, [ErrorItem("/id", f"id {exporter.id!r} is not CE- followed by 8 characters A-Z, 2-7")]
        )
    if path.name != f"{exporter.id}.json":
        raise StoredExporterError(
            source,
            [ErrorItem("/id", f"id {exporter.id!r} differs from the file name; name it {exporter.id}.json")],
        )
    return exporter


class ExporterStore:
    """Create, read, update and page exporters kept as files in `home.exporters_dir`."""

    def __init__(self, home: Home):
        self.home = home

    @property
    def folder(self) -> Path:
        return self.home.exporters_dir

    # ------------------------------------------------------------ reading

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        # Dot files are temp files of writes in progress (or left by a crash) and the lock file.
        return sorted(p for p in self.folder.glob("*.json") if not p.name.startswith("."))

    def all(self) -> list[Exporter]:
        """Every readable stored exporter, newest first (createdAt desc, then id desc)."""
        return self._readable()[0]

    def _readable(self) -> tuple[list[Exporter], tuple[str, ...]]:
        """The exporters that can be read, and the ids of the files that cannot (logged, skipped).

        One corrupt or hand-broken file must not take the whole store down: it is left out of
        lists and look-ups, and a GET of its id answers with what is wrong with it.
        """
        exporters: list[Exporter] = []
        skipped: list[str] = []
        for path in self._files():
            try:
                exporters.append(load_exporter_file(path))
            except StoredExporterError as exc:
                log.error("skipping %s: %s", exc.source, exc.message)
                skipped.append(path.stem)
        exporters.sort(key=_sort_key, reverse=True)
        return exporters, tuple(skipped)

    def get(self, ident: str) -> Exporter:
        """Look up by id (`CE-7ABCDEFG`) or by `ext-<externalId>`."""
        if ident.startswith(EXTERNAL_PREFIX) and len(ident) > len(EXTERNAL_PREFIX):
            external_id = ident[len(EXTERNAL_PREFIX) :]
            for exporter in self.all():
                if exporter.externalId == external_id:
                    return exporter
            raise NotFoundError(f"exporter {ident!r} not found: no exporter has externalId {external_id!r}")
        if not ID_PATTERN.fullmatch(ident):
            raise NotFoundError(
                f"exporter {ident!r} not found: ids look like CE-ABCDEFGH (or ext-<externalId>)"
            )
        path = self.folder / f"{ident}.json"
        if not path.is_file():
            raise NotFoundError(f"exporter {ident!r} not found (no configs/exporters/{ident}.json)")
        return load_exporter_file(path)

    def list(
        self,
        limit: int = DEFAULT_LIMIT,
        starting_after: str | None = None,
        ending_before: str | None = None,
    ) -> Page:
        """One page, newest first. Cursors are exporter ids; give at most one of them."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise BadRequestError(
                "arguments", [ErrorItem("/limit", f"limit must be an integer from 1 to {MAX_LIMIT}")]
            )
        if starting_after is not None and ending_before is not None:
            raise BadRequestError(
                "arguments",
                [ErrorItem("/endingBefore", "give startingAfter or endingBefore, not both")],
            )
        exporters, skipped = self._readable()
        total = len(exporters)
        ids = [e.id for e in exporters]
        if starting_after is not None:
            start = _cursor_index(ids, starting_after, "/startingAfter") + 1
            data = exporters[start : start + limit]
            return Page(total, data, start + limit < total, True, skipped)
        if ending_before is not None:
            end = _cursor_index(ids, ending_before, "/endingBefore")
            begin = max(0, end - limit)
            data = exporters[begin:end]
            return Page(total, data, True, begin > 0, skipped)
        return Page(total, exporters[:limit], limit < total, False, skipped)

    # ------------------------------------------------------------ writing

    def create(self, body: object, source: str) -> Exporter:
        """Validate a body (CONTRACT.md §3) and store it as a new exporter."""
        parsed = parse(ExporterBody, body, source)
        company_id = self._resolve_company(parsed, source)
        self._check_sftp(parsed, source)
        with self._locked():
            self._check_external_id(parsed.externalId, exclude=None)
            exporter_id = self._fresh_id()
            stamp = now_iso()
            exporter = self._build(parsed, exporter_id, company_id, stamp, stamp)
            self._check_remote_names(exporter)
            self._write(exporter)
        log.info("created exporter %s (company %s)", exporter.id, exporter.companyId)
        return exporter

    def update(
        self,
        ident: str,
        body: object,
        source: str,
        precondition: Callable[[Exporter], None] | None = None,
    ) -> Exporter:
        """Replace an exporter's body whole (PUT); id and createdAt stay.

        The body may carry the read-only keys `id`, `createdAt` and `updatedAt` (a GET's `data` sent
        back as it is) when they equal the stored values; an `updatedAt` that differs means the
        exporter changed since it was read (StaleExporterError, HTTP 412). `precondition` is called
        with the stored exporter under the store lock (the HTTP If-Match check).
        """
        given: dict[str, object] = {}
        if isinstance(body, dict):
            given = {key: body[key] for key in READ_ONLY_KEYS if key in body}
            body = {key: value for key, value in body.items() if key not in READ_ONLY_KEYS}
        parsed = parse(ExporterBody, body, source)
        company_id = self._resolve_company(parsed, source)
        self._check_sftp(parsed, source)
        with self._locked():
            current = self.get(ident)
            _check_read_only(current, given, source)
            if precondition is not None:
                precondition(current)
            self._check_external_id(parsed.externalId, exclude=current.id)
            exporter = self._build(parsed, current.id, company_id, current.createdAt, now_iso())
            self._check_remote_names(exporter)
            self._write(exporter)
        log.info("updated exporter %s", exporter.id)
        return exporter

    @staticmethod
    def _build(body: ExporterBody, exporter_id: str, company_id: str, created: str, updated: str) -> Exporter:
        # Only the keys the client set are kept, so an exporter reads back in the shape it was sent.
        data = body.model_dump(mode="json", exclude_unset=True)
        data.update(id=exporter_id, companyId=company_id, createdAt=created, updatedAt=updated)
        return parse(Exporter, data, exporter_id)

    def _resolve_company(self, body: ExporterBody, source: str) -> str:
        companies = self.home.company_ids()
        # Paths in messages are relative to the home: they also go back to HTTP clients.
        folder = "configs/companies"
        if body.companyId is not None:
            if body.companyId not in companies:
                known = ", ".join(companies) or "none"
                raise InvalidInputError(
                    source,
                    [
                        ErrorItem(
                            "/companyId",
                            f"company {body.companyId!r} is not configured: no {folder}/{body.companyId}.yaml"
                            f" (configured: {known})",
                        )
                    ],
                )
            return body.companyId
        if len(companies) == 1:
            return companies[0]
        if not companies:
            message = f"no company is configured: add {folder}/<companyId>.yaml, then retry"
        else:
            message = f"several companies are configured ({', '.join(companies)}): give companyId"
        raise InvalidInputError(source, [ErrorItem("/companyId", message)])

    def _check_sftp(self, body: ExporterBody, source: str) -> None:
        if body.sftpSettingId is None:
            return
        # The id already matched the safe-id pattern in the model; only existence is checked here,
        # the setting itself (and its secrets) is read at delivery time.
        relative = f"configs/sftp/{body.sftpSettingId}.yaml"
        if not self.home.path(relative).is_file():
            raise InvalidInputError(
                source,
                [
                    ErrorItem(
                        "/sftpSettingId", f"SFTP setting {body.sftpSettingId!r} not found: no {relative}"
                    )
                ],
            )

    def _destination(self, setting_id: str) -> tuple[str, ...]:
        """Where an SFTP setting delivers (host, port, remoteDir), or just its id when it cannot be read."""
        try:
            setting = self.home.sftp(setting_id)
        except ContactExporterError:
            return (setting_id,)
        return (setting.host.lower(), str(setting.port), posixpath.normpath(setting.remoteDir))

    def _check_remote_names(self, exporter: Exporter) -> None:
        """Refuse an exporter whose files would land on another exporter's names at the same destination."""
        if exporter.sftpSettingId is None:
            return
        where = self._destination(exporter.sftpSettingId)
        days = (date(2026, 1, 2), date(2026, 12, 31))

        def names(e: Exporter) -> set[str]:
            return {file_name_of(e, day) for day in days}

        mine = names(exporter)
        for other in self.all():
            if other.id == exporter.id or other.sftpSettingId is None:
                continue
            if self._destination(other.sftpSettingId) == where and mine & names(other):
                raise DuplicateRemoteNameError(other.id, sorted(mine & names(other))[0])

    def _check_external_id(self, external_id: str | None, exclude: str | None) -> None:
        if external_id is None:
            return
        for other in self.all():
            if other.externalId == external_id and other.id != exclude:
                raise DuplicateExternalIdError(external_id, other.id)

    def _fresh_id(self) -> str:
        for _ in range(_ID_ATTEMPTS):
            candidate = new_exporter_id()
            if not (self.folder / f"{candidate}.json").exists():
                return candidate
        raise TransientError(f"could not find a free exporter id in {self.folder} after {_ID_ATTEMPTS} tries")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        # The lock file stays in place: removing it on release would let a waiter lock an unlinked inode.
        lock = FileLock(self.folder / LOCK_NAME, timeout=LOCK_TIMEOUT_SECONDS, preserve_lock_file=True)
        try:
            lock.acquire()
        except Timeout:
            raise TransientError(
                f"exporter store {self.folder} is locked by another writer for over "
                f"{LOCK_TIMEOUT_SECONDS:.0f} s; retry"
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _write(self, exporter: Exporter) -> None:
        text = json.dumps(exporter.public(), indent=2, ensure_ascii=False) + "\n"

        def write(tmp: Path) -> None:
            tmp.write_text(text, encoding="utf-8")

        atomic_write(self.folder / f"{exporter.id}.json", write)
