"""The `fusionrank` command groups; `app.cli` attaches them to the root command."""

__all__: list[str] = []
