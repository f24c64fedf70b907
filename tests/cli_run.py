"""``run(*args)``: numbacnn's command line in this process (click's CliRunner), asserting a zero exit status
unless ``ok=False``; the tests import it (tests/ is on sys.path)."""
from click.testing import CliRunner

from numbacnn.cli import cli


def run(*args, ok=True):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result
