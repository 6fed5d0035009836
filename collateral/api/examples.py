"""The error responses of the OpenAPI document: problem details, which no response model
of a route can say (the exception handlers write them)."""

PROBLEM_SCHEMA = {
    "type": "object",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def _problem(status: int, title: str, detail: str) -> dict:
    example = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return {
        "description": title,
        "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA, "example": example}},
    }


PROBLEMS = {
    401: _problem(401, "Unauthorized", "send an API key as 'Authorization: Bearer <key>'"),
    403: _problem(403, "Forbidden", "role operator may not do this (needs loan_officer or ...)"),
    404: _problem(404, "Not Found", "loan 'LN-0042' does not exist"),
    422: _problem(422, "Unprocessable Entity", "parcel_ids.0: parcel 'X-1' is not registered"),
}
CONFLICT = {409: _problem(409, "Conflict", "loan 'LN-ANXI-0001' exists")}
