"""`python -m app.cli ...`: the same as the `fusionrank` script."""

from app.cli import main

__all__: list[str] = []

main()
