"""``medforensics ui``: start the web app (Streamlit) on this computer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import typer

from medforensics.cli.output import stderr, stdout

#: Streamlit options every launch uses: no browser opened by the server, no telemetry, no file
#: watching or run-on-save (the app is not being developed), no error details in the page
FIXED_OPTIONS = (
    ("server.headless", "true"),
    ("browser.gatherUsageStats", "false"),
    ("server.fileWatcherType", "none"),
    ("server.runOnSave", "false"),
    ("client.showErrorDetails", "none"),
    ("client.toolbarMode", "minimal"),
    ("global.developmentMode", "false"),
)


def streamlit_command(host: str, port: int, max_upload_mb: int) -> list[str]:
    """The ``streamlit run`` command line for the app on ``host:port``."""
    from medforensics.ui import APP_PATH

    options = [
        *FIXED_OPTIONS,
        ("server.address", host),
        ("server.port", str(port)),
        ("server.maxUploadSize", str(max_upload_mb)),
    ]
    command = [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    for name, value in options:
        command.append(f"--{name}={value}")
    return command


def ui_command(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default)."),
    port: int = typer.Option(8501, help="TCP port."),
    api: str | None = typer.Option(
        None, "--api", help="Send analyses to this medforensics REST API instead of running them."
    ),
    api_key_env: str = typer.Option(
        "MEDFORENSICS_API_KEY",
        "--api-key-env",
        help="Environment variable holding the API key for --api (the key itself never goes on "
        "a command line).",
    ),
    dicomweb: str | None = typer.Option(
        None, "--dicomweb", help="DICOMweb base URL of a PACS to pick studies from."
    ),
    detector: str = typer.Option(
        "auto", help="Detector for analyses run in the app (see 'medforensics env')."
    ),
    max_upload_mb: int = typer.Option(1024, "--max-upload-mb", help="Largest upload in MiB."),
    print_command: bool = typer.Option(
        False, "--print-command", help="Print the command and settings instead of starting."
    ),
) -> None:
    """Start the web app: analyse, batch, attack simulator. Open the URL it prints."""
    from medforensics.ui.settings import UiSettings
    from medforensics.utils.optional import MissingExtraError, require

    if not 0 < port < 65536:
        raise typer.BadParameter(f"{port} is not a TCP port", param_hint="--port")
    settings = UiSettings(
        detector=detector, api_url=api, api_key_env=api_key_env, dicomweb_url=dicomweb
    )
    command = streamlit_command(host, port, max_upload_mb)
    if print_command:
        for name, value in sorted(settings.to_env().items()):
            stdout.print(f"{name}={value}", highlight=False, soft_wrap=True)
        stdout.print(" ".join(command), highlight=False, soft_wrap=True)
        return
    try:
        require("streamlit", "the web app")
    except MissingExtraError as exc:
        stderr.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    if api and not settings.api_key():
        stderr.print(
            f"[yellow]warning:[/] {api_key_env} is not set: the API will answer 401 "
            "(create a key with 'medforensics apikey create')"
        )
    if host not in ("127.0.0.1", "localhost", "::1"):
        stderr.print(
            f"[yellow]warning:[/] listening on {host}: anyone who can reach it can upload "
            "scans; the app has no login. Put it behind an authenticating proxy with TLS."
        )
    stderr.print(f"medforensics web app on http://{host}:{port} (Ctrl+C stops it)")
    env = {**os.environ, **settings.to_env()}
    process = subprocess.Popen(command, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    raise typer.Exit(0 if code in (0, -signal.SIGTERM) else code)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
