import typer

app = typer.Typer(
    help="spacy-refined: entity linking for spaCy.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
kb_app = typer.Typer(help="Build, inspect and update knowledge bases.", no_args_is_help=True)
app.add_typer(kb_app, name="kb")
