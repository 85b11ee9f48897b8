"""A report on the terminal: `attnplace report`, and what `attnplace grid` prints when its runs end."""

import sys
from pathlib import Path

from ..terminal import say
from .build import write_report
from .tables import (factorial_lines, format_contrast_markdown, format_summary, omnibus_lines, primary_lines,
                     tuned_lines)


def report(results_dir, wandb: bool = False, allow_mixed_environments: bool = False, wide: bool = False,
           **settings) -> None:
    """Write the tables and plots, print the summary table, the omnibus (and factorial) tests and what could
    not be read; with `wandb`, also log them as the grid's W&B summary run. `settings` override grid.json's
    `report:`."""
    result = write_report(results_dir, allow_mixed_environments, **settings)
    for problem in result.problems:
        say(f"skipped: {problem}", file=sys.stderr)
    print(format_summary(result.summary, wide))
    for line in [*primary_lines(result.summary), *result.caveats, *result.notes, *omnibus_lines(result.omnibus),
                 *factorial_lines(result.factorial)]:
        say(line)
    if len(result.contrast):
        title, *table = format_contrast_markdown(result.contrast).splitlines()
        say(title)
        print("\n".join(table))
    if result.tuned is not None:
        for line in tuned_lines(result.tuned):
            say(line)
        print(format_summary(result.tuned.summary, wide) if len(result.tuned.summary) else "no confirm block yet")
    say(f"tables and plots: {', '.join(sorted(Path(p).name for p in result.written))} in {results_dir}")
    if wandb:
        from .dashboard import log_summary_run

        say(f"W&B summary run: {log_summary_run(result, results_dir)}")
