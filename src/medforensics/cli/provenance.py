"""``medforensics sign``, ``verify``, ``keys init`` and ``audit verify|head|list``.

Exit codes follow ``scan``: ``verify`` exits 0 when every file carries signatures that all
verify with no certificate problem, 1 when some file is invalid, untrusted or unsigned, 2 when
some input could not be read. ``sign`` exits 0 or 2; ``audit verify`` 0 (intact) or 1.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import typer
from rich.markup import escape
from rich.table import Table

from medforensics.cli.output import stderr, stdout, write_json_atomic
from medforensics.utils.optional import MissingExtraError, require

if TYPE_CHECKING:
    from medforensics.provenance.audit import AuditLog
    from medforensics.provenance.verify import FileVerification

_STATUS_STYLE = {
    "valid": "green",
    "invalid": "bold red",
    "untrusted": "yellow",
    "unsigned": "yellow",
    "error": "bold magenta",
}


def _fail(message: str, code: int = 2) -> typer.Exit:
    stderr.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _need_crypto(feature: str) -> None:
    try:
        require("cryptography", feature)
    except MissingExtraError as exc:
        raise _fail(str(exc)) from exc


def _passphrase(env_var: str | None, prompt: str, confirm: bool = False) -> bytes:
    if env_var:
        value = os.environ.get(env_var)
        if value is None:
            raise _fail(f"the environment variable {env_var} (--passphrase-env) is not set")
        return value.encode()
    try:
        return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)).encode()
    except (click.exceptions.Abort, typer.Abort) as exc:
        raise _fail("no passphrase given (use --passphrase-env VAR when not interactive)") from exc


# ------------------------------------------------------------------------------------ sign


def _inputs(paths: list[Path]) -> Iterator[tuple[Path, Path, bool]]:
    """(file, path relative to the output folder, given explicitly) for every input file."""
    for path in paths:
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = file.relative_to(path)
                if not any(part.startswith(".") for part in relative.parts):
                    yield file, Path(path.name) / relative, False
        else:
            yield path, Path(path.name), True


def sign_command(
    paths: list[Path] = typer.Argument(..., help="DICOM files or folders (searched recursively)."),
    key: Path = typer.Option(..., "--key", help="The signer's private key (PEM or DER)."),
    cert: Path = typer.Option(..., "--cert", help="The signer's certificate (PEM or DER)."),
    passphrase_env: str | None = typer.Option(
        None, "--passphrase-env", help="Environment variable holding the key's passphrase."
    ),
    profile: str = typer.Option(
        "base",
        "--profile",
        help="base: every attribute; creator: UIDs, equipment, image and pixel attributes.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Write the signed copies into this folder."
    ),
    in_place: bool = typer.Option(
        False, "--in-place", help="Replace the input files with signed ones (atomically)."
    ),
    mac: str = typer.Option("SHA256", "--mac", help="MAC algorithm: SHA256, SHA384 or SHA512."),
    purpose: int = typer.Option(14, "--purpose", help="ASTM E1762 purpose (14: source signature)."),
    json_out: str | None = typer.Option(None, "--json", help="Write a JSON summary here ('-')."),
) -> None:
    """Sign DICOM files (PS3.15 digital signatures). The inputs stay untouched unless --in-place.

    Exit 0: everything signed; 2: something could not be signed.
    """
    if (out is None) == (not in_place):
        raise _fail("choose where the signed files go: --out DIR, or --in-place")
    _need_crypto("signing")
    from medforensics.provenance.certs import KeyFileError, PassphraseNeeded, utcnow
    from medforensics.provenance.profiles import PROFILES
    from medforensics.provenance.sign import Signer, SigningError, sign_file

    if profile not in PROFILES:
        raise _fail(f"--profile {profile!r}: choose one of {', '.join(PROFILES)}")
    try:
        try:
            signer = Signer.from_files(key, cert)
        except PassphraseNeeded:
            secret = _passphrase(passphrase_env, f"Passphrase for {key}")
            signer = Signer.from_files(key, cert, secret)
        signer.check_valid(utcnow())
    except (KeyFileError, SigningError) as exc:
        raise _fail(str(exc)) from exc
    entries: list[dict[str, Any]] = []
    failed = False
    for source, relative, explicit in _inputs(paths):
        target = source if in_place else (out or Path()) / relative
        entry: dict[str, Any] = {"input": str(source), "output": str(target)}
        if not in_place and target.exists():
            entry["error"] = f"{target} exists: signed copies never overwrite files"
        else:
            try:
                signed = sign_file(source, target, signer, profile=profile, mac_algorithm=mac,
                                   purpose=purpose)  # fmt: skip
                entry.update(signature_uid=signed.signature_uid, elements=signed.signed_elements)
            except SigningError as exc:
                if not explicit and "not a readable DICOM file" in str(exc):
                    entry["skipped"] = "not DICOM"
                else:
                    entry["error"] = str(exc)
            except ValueError as exc:  # e.g. an unknown profile
                raise _fail(str(exc)) from exc
        failed = failed or "error" in entry
        entries.append(entry)
        if json_out != "-":
            _print_sign_entry(entry)
    if not entries:
        raise _fail("no files found to sign")
    if json_out:
        write_json_atomic({"signer": signer.name, "profile": profile, "files": entries}, json_out)
    raise typer.Exit(2 if failed else 0)


def _print_sign_entry(entry: dict[str, Any]) -> None:
    if "error" in entry:
        stdout.print(f"[red]not signed[/] {escape(entry['input'])}: {escape(entry['error'])}")
    elif "skipped" in entry:
        stdout.print(f"[dim]skipped[/] {escape(entry['input'])} ({entry['skipped']})")
    else:
        stdout.print(
            f"[green]signed[/] {escape(entry['output'])} ({entry['elements']} elements, "
            f"signature {entry['signature_uid']})"
        )


# ---------------------------------------------------------------------------------- verify


def verify_command(
    paths: list[Path] = typer.Argument(..., help="DICOM files or folders (searched recursively)."),
    trust: Path | None = typer.Option(
        None, "--trust", help="Trusted CA certificates (PEM bundle): signers must chain to one."
    ),
    crl: list[Path] = typer.Option(
        [], "--crl", help="Certificate revocation list (PEM or DER); may be repeated."
    ),
    allow_unsigned: bool = typer.Option(
        False, "--allow-unsigned", help="Do not count unsigned files as a failure."
    ),
    json_out: str | None = typer.Option(None, "--json", help="Write the JSON report here ('-')."),
) -> None:
    """Verify the digital signatures of DICOM files and say what changed.

    Exit 0: every file signed and valid; 1: some file invalid, untrusted or unsigned;
    2: some input unreadable.
    """
    _need_crypto("verifying signatures")
    from medforensics.provenance.certs import KeyFileError, load_certificates, load_crl
    from medforensics.provenance.verify import VerifyOptions, verify_file

    try:
        options = VerifyOptions(
            trust=tuple(load_certificates(trust)) if trust else None,
            crls=tuple(load_crl(path) for path in crl),
        )
    except KeyFileError as exc:
        raise _fail(str(exc)) from exc
    reports: list[FileVerification] = []
    for path, _, explicit in _inputs(paths):
        report = verify_file(path, options)
        if report.status == "error" and not explicit:
            continue  # a folder's non-DICOM files
        reports.append(report)
        if json_out != "-":
            _print_report(report)
    if not reports:
        raise _fail("no DICOM files found")
    counts: dict[str, int] = {}
    for report in reports:
        counts[report.status] = counts.get(report.status, 0) + 1
    if json_out:
        write_json_atomic({"files": [r.to_dict() for r in reports], "counts": counts}, json_out)
    if counts.get("error"):
        raise typer.Exit(2)
    failing = {"invalid", "untrusted"} | (set() if allow_unsigned else {"unsigned"})
    raise typer.Exit(1 if any(counts.get(status) for status in failing) else 0)


def _print_report(report: FileVerification) -> None:
    style = _STATUS_STYLE.get(report.status, "")
    stdout.print(f"[{style}]{report.status}[/] {escape(report.path)}")
    if report.status == "error":
        stdout.print(f"    {escape(report.error or '')}")
    for check in report.signatures:
        stdout.print(f"    {escape(check.summary())}")
        if check.intact and report.status != "invalid":
            for note in check.notes:
                stdout.print(f"    [dim]{escape(note)}[/]")


# ------------------------------------------------------------------------------------ keys

keys_app = typer.Typer(help="Site signing keys and certificates.", no_args_is_help=True)


@keys_app.command("init")
def keys_init(
    out: Path = typer.Option(..., "--out", help="Folder for the CA and signer keys and certs."),
    algorithm: str = typer.Option("rsa", "--algorithm", help="rsa (3072 bit) or ecdsa (P-256)."),
    days: int = typer.Option(730, "--days", help="Validity of the signing certificate in days."),
    subject: str = typer.Option(
        "CN=medforensics signer", "--subject", help="Signer name, e.g. 'CN=CT scanner 2,O=Site'."
    ),
    no_encrypt: bool = typer.Option(
        False, "--no-encrypt", help="Write the private keys unencrypted (not recommended)."
    ),
    passphrase_env: str | None = typer.Option(
        None, "--passphrase-env", help="Environment variable holding the passphrase for the keys."
    ),
) -> None:
    """Create a site CA and a signing key and certificate issued by it.

    The private keys are encrypted with a passphrase (asked for, or from --passphrase-env) and
    written with mode 0600; give the CA certificate to verifiers as their --trust bundle.
    """
    _need_crypto("creating keys")
    from medforensics.provenance.certs import generate_site

    if algorithm not in ("rsa", "ecdsa"):
        raise _fail(f"--algorithm {algorithm!r}: choose rsa or ecdsa")
    secret: bytes | None = None
    if not no_encrypt:
        secret = _passphrase(passphrase_env, "Passphrase for the new keys", confirm=True)
        if not secret:
            raise _fail(
                "an empty passphrase would leave the private keys unencrypted: give one, or "
                "pass --no-encrypt to write them unencrypted on purpose"
            )
    try:
        files = generate_site(
            out, algorithm=algorithm, days=days, subject=subject, passphrase=secret
        )
    except (FileExistsError, ValueError) as exc:
        raise _fail(str(exc)) from exc
    state = "encrypted" if secret else "[bold red]UNENCRYPTED[/]"
    stdout.print(
        f"site CA certificate:  {files.ca_certificate}   (give this to verifiers: --trust)"
    )
    stdout.print(f"site CA key:          {files.ca_key}   ({state}, mode 0600; keep it offline)")
    stdout.print(f"signing certificate:  {files.certificate}")
    stdout.print(f"signing key:          {files.key}   ({state}, mode 0600)")
    stdout.print(
        f"sign with: medforensics sign FILES --key {files.key} --cert {files.certificate} --out DIR"
    )


# ----------------------------------------------------------------------------------- audit

audit_app = typer.Typer(help="The hash-chained audit log of analyses.", no_args_is_help=True)
_DB_HELP = "Database URL (default: $MEDFORENSICS_DB_URL or the data folder's SQLite file)."


def _open_log(db: str | None) -> AuditLog:
    from medforensics.db import default_url, make_engine
    from medforensics.provenance.audit import AuditLog

    url = db or default_url()
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if path not in ("", ":memory:") and not Path(path).exists():
            raise _fail(f"no database at {path} (give --db URL)")
    try:
        return AuditLog(make_engine(url, create=False))
    except Exception as exc:  # any driver error: the message is the driver's
        raise _fail(f"cannot open the database {url}: {exc}") from exc


@audit_app.command("verify")
def audit_verify(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    expect_head: str | None = typer.Option(
        None,
        "--expect-head",
        help="A head hash recorded earlier ('audit head'): detects truncation.",
    ),
    json_out: str | None = typer.Option(None, "--json", help="Write the JSON report here ('-')."),
) -> None:
    """Check that no audit entry was edited, removed or re-ordered. Exit 0: intact; 1: not."""
    report = _open_log(db).verify(expect_head=expect_head)
    if json_out:
        payload = {
            "ok": report.ok,
            "entries": report.entries,
            "head": report.head,
            "problems": [{"seq": p.seq, "message": p.message} for p in report.problems],
            "notes": report.notes,
        }
        write_json_atomic(payload, json_out)
    if json_out != "-":
        if report.ok:
            stdout.print(
                f"[green]audit log intact[/]: {report.entries} entries, head {report.head}"
            )
        else:
            stdout.print(f"[bold red]audit log altered[/]: {len(report.problems)} problem(s)")
            for problem in report.problems:
                stdout.print(f"    {escape(str(problem))}")
        for note in report.notes:
            stdout.print(f"    [dim]{escape(note)}[/]")
    raise typer.Exit(0 if report.ok else 1)


@audit_app.command("head")
def audit_head(db: str | None = typer.Option(None, "--db", help=_DB_HELP)) -> None:
    """Print the hash of the newest entry: record it elsewhere to detect truncation later."""
    head = _open_log(db).head()
    if head is None:
        stderr.print("the audit log is empty")
        raise typer.Exit(1)
    typer.echo(head)


@audit_app.command("list")
def audit_list(
    db: str | None = typer.Option(None, "--db", help=_DB_HELP),
    limit: int = typer.Option(20, "--limit", help="How many of the newest entries."),
    json_out: str | None = typer.Option(None, "--json", help="Write the entries here ('-')."),
) -> None:
    """Show the newest audit entries."""
    entries = _open_log(db).entries(limit=limit)
    if json_out:
        write_json_atomic({"entries": [e.to_dict() for e in entries]}, json_out)
    if json_out == "-":
        return
    table = Table(title="medforensics audit log")
    for column in ("seq", "time (UTC)", "actor", "action", "result", "hash"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        verdict = entry.result.get("verdict")
        score = entry.result.get("score")
        result = (
            f"{verdict} {score:.3f}"
            if verdict and isinstance(score, float)
            else str(verdict or entry.result.get("status") or "")
        )
        table.add_row(
            str(entry.seq), entry.time[:19], entry.actor, entry.action, result,
            entry.entry_hash[:16],
        )  # fmt: skip
    stdout.print(table)


def register(app: typer.Typer) -> None:
    app.command("sign")(sign_command)
    app.command("verify")(verify_command)
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
