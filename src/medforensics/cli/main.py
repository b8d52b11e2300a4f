"""The ``medforensics`` command: builds the typer app from one module per subcommand."""

from __future__ import annotations

import importlib

import typer

from medforensics.__about__ import __version__

#: each module defines ``register(app: typer.Typer) -> None``
SUBCOMMAND_MODULES = (
    "medforensics.cli.scan",
    "medforensics.cli.info",
    "medforensics.cli.env",
    "medforensics.cli.demo",
    "medforensics.cli.calibrate",
    "medforensics.cli.tamper",
    "medforensics.cli.make_dataset",
    "medforensics.cli.train",
    "medforensics.cli.train_attack",
    "medforensics.cli.evaluate",
    "medforensics.cli.serve",
    "medforensics.cli.report",
    "medforensics.cli.provenance",
    "medforensics.cli.gateway",
    "medforensics.cli.archive",
    "medforensics.cli.ui",
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"medforensics {__version__}")
        raise typer.Exit()


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="medforensics",
        help="Detect tampered and AI-generated medical images (CT, X-ray, MRI).",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version_callback, is_eager=True, help="Print the version."
        ),
    ) -> None:
        """medforensics: where, why and how sure an image was manipulated."""

    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(app)
    return app


def main() -> None:
    build_app()()


if __name__ == "__main__":
    main()
