"""User-facing errors.

A `TaoUserError` is a mistake the user can fix (bad spec, missing file, wrong key). The CLI
prints its message as one line and exits 1; anything else is a bug and keeps its traceback.
"""


class TaoUserError(Exception):
    """An error caused by the user's input; its message says what to fix."""


class SpecError(TaoUserError):
    """A spec value that is not allowed.

    `path` is the dotted field path (`model.num_queries`), `value` the offending value and
    `expected` what would be allowed. `source` is the spec file, when known.
    """

    def __init__(self, path: str, value, expected: str, source: str | None = None):
        self.path = path
        self.value = value
        self.expected = expected
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{path}: got {value!r}; expected {expected}")


class SpecErrors(TaoUserError):
    """Several SpecErrors found in one pass, reported together."""

    def __init__(self, errors: list[SpecError]):
        self.errors = list(errors)
        lines = [str(e) for e in self.errors]
        head = f"{len(lines)} spec errors:\n  " if len(lines) > 1 else ""
        super().__init__(head + "\n  ".join(lines))
