"""The errors a request can meet, in four kinds, whatever it asked for: what it names does
not exist (``NotFound``), it collides with what is stored (``Conflict``), a field is wrong
(``Invalid``), or the rules refuse it (``Refused``). Domain errors subclass one of these, or
are mapped to one by the API's table (collateral/api/problems.py), so each kind answers
with one status and one problem shape.
"""


class NotFound(LookupError):
    """An id that names nothing (a loan, parcel, farm, animal, scene, claim, subscription,
    or one the caller may not see: reported as absent)."""


class Conflict(ValueError):
    """A request that collides with what is stored: an id that exists, a pledge another
    loan holds, a state that forbids the change."""


class Invalid(ValueError):
    """Well-formed input with a wrong value, or one that names things that do not exist;
    ``field`` says where."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class Refused(ValueError):
    """Input the rules refuse as a whole (a plot that cannot be taken, inputs that cannot
    be valued), with the reason."""
