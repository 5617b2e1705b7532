"""medfed's error types: each names the site, file and field at fault, never a patient value."""

from __future__ import annotations


class MedfedError(Exception):
    """Base of every error medfed raises on purpose; its text is safe to log and to send."""


COMMAND_LINE = "command line"  # the source a ConfigError names for a command's own options and arguments


class ConfigError(MedfedError):
    """A study or site configuration value is missing or invalid."""

    def __init__(self, field: str, problem: str, source: str = "study config") -> None:
        self.field, self.problem = field, problem
        super().__init__(f"{source}: '{field}' {problem}")


class DataError(MedfedError):
    """A site's data (or, with no site, the data scientist's own file) cannot be used as configured."""

    def __init__(self, site: str | None, problem: str, file: str | None = None, column: str | None = None) -> None:
        self.site, self.file, self.column, self.problem = site, file, column, problem
        where = [f"site '{site}'"] if site is not None else []
        where += [f"file '{file}'"] if file else []
        where += [f"column '{column}'"] if column else []
        super().__init__(f"{', '.join(where)}: {problem}")


class UpdateRejected(MedfedError):
    """A site's model update failed the server's checks and was left out of aggregation."""

    def __init__(self, site: str, problem: str) -> None:
        self.site = site
        super().__init__(f"update from site '{site}' rejected: {problem}")


class PolicyError(MedfedError):
    """The study asks for more than the site allows."""
