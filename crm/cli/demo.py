"""Demo data for demos and benchmarks."""

import click


@click.command("seed-demo")
@click.option("--leads", "count", type=int, default=200, show_default=True)
def seed_demo(count: int) -> None:
    """Create realistic fake leads."""
    raise click.ClickException("not built yet")
